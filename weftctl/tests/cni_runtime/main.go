// cni-runtime: a small CNI runtime on libcni, the library containerd and
// CRI-O use to run CNI plugins. weftctl/tests/cni_runtime.rs builds it (from
// Debian's golang-github-appc-cni-dev, offline) and drives weft-cni with it
// the way a runtime on a node would.
//
// Usage:
//
//	cni-runtime add    <conflist-file> <container-id> <netns-path> <ifname>
//	cni-runtime check  <conflist-file> <container-id> <netns-path> <ifname>
//	cni-runtime del    <conflist-file> <container-id> <netns-path> <ifname>
//	cni-runtime status <conflist-file>
//	cni-runtime gc     <conflist-file> [<container-id>/<ifname>]...
//
// Environment:
//
//	CNI_PATH       where the plugins are (':'-separated); required
//	CNI_CACHE_DIR  libcni's cache of results (default /var/lib/cni)
//	CNI_ARGS       "K=V;K=V" passed to the plugins, as kubelet's runtime does
//	CAP_ARGS       JSON object of capability arguments (portMappings, ...)
//	CNI_TIMEOUT    seconds for the whole operation (default 60)
//
// add, check and del are libcni's AddNetworkList, CheckNetworkList and
// DelNetworkList: the chain in order (del in reverse), each plugin given the
// previous one's result, the result cached for check and del. add prints
// the list's result as JSON on stdout.
//
// The libcni of Debian 12 (1.1.2) predates CNI 1.1.0, so it has no STATUS
// and no GC. status and gc do what libcni 1.2 does with its lower-level
// invoke package: run each plugin of the list with the list's name and
// cniVersion, STATUS with nothing else, GC with
// "cni.dev/valid-attachments" (the attachments given as arguments). Unlike
// libcni 1.2, which silently skips lists older than 1.1.0, they refuse
// them, so that a test never passes without the plugins being asked.
//
// On failure it prints the error on stderr and, when a plugin returned a
// CNI error, that error as JSON on stdout ({"code", "msg", "details"}), and
// exits 1. Bad usage exits 2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

const usage = `usage:
  cni-runtime add|check|del <conflist-file> <container-id> <netns-path> <ifname>
  cni-runtime status <conflist-file>
  cni-runtime gc <conflist-file> [<container-id>/<ifname>]...
environment: CNI_PATH (required), CNI_CACHE_DIR, CNI_ARGS, CAP_ARGS, CNI_TIMEOUT`

func main() {
	if len(os.Args) < 3 {
		badUsage("")
	}
	command, confFile := os.Args[1], os.Args[2]
	rest := os.Args[3:]

	list, err := libcni.ConfListFromFile(confFile)
	if err != nil {
		fail(fmt.Errorf("reading %s: %w", confFile, err))
	}
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	if len(paths) == 0 {
		badUsage("CNI_PATH is not set")
	}
	cni := libcni.NewCNIConfigWithCacheDir(paths, os.Getenv("CNI_CACHE_DIR"), nil)

	timeout := 60 * time.Second
	if s := os.Getenv("CNI_TIMEOUT"); s != "" {
		secs, err := strconv.Atoi(s)
		if err != nil || secs <= 0 {
			badUsage("CNI_TIMEOUT must be a positive number of seconds")
		}
		timeout = time.Duration(secs) * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	switch command {
	case "add", "check", "del":
		if len(rest) != 3 {
			badUsage(command + " takes <conflist-file> <container-id> <netns-path> <ifname>")
		}
		rt, err := runtimeConf(rest[0], rest[1], rest[2])
		if err != nil {
			badUsage(err.Error())
		}
		switch command {
		case "add":
			result, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				fail(err)
			}
			if err := result.Print(); err != nil {
				fail(err)
			}
		case "check":
			if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
				fail(err)
			}
		case "del":
			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				fail(err)
			}
		}
	case "status":
		if len(rest) != 0 {
			badUsage("status takes <conflist-file> only")
		}
		if err := eachPlugin(ctx, list, paths, "STATUS", nil); err != nil {
			fail(err)
		}
	case "gc":
		valid := make([]map[string]string, 0, len(rest))
		for _, a := range rest {
			id, ifname, ok := strings.Cut(a, "/")
			if !ok || id == "" || ifname == "" {
				badUsage(fmt.Sprintf("gc attachment %q is not <container-id>/<ifname>", a))
			}
			valid = append(valid, map[string]string{"containerID": id, "ifname": ifname})
		}
		inject := map[string]interface{}{"cni.dev/valid-attachments": valid}
		if err := eachPlugin(ctx, list, paths, "GC", inject); err != nil {
			fail(err)
		}
	default:
		badUsage(fmt.Sprintf("unknown command %q", command))
	}
}

// runtimeConf is what a runtime passes for one attachment.
func runtimeConf(containerID, netns, ifname string) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: containerID,
		NetNS:       netns,
		IfName:      ifname,
	}
	if s := os.Getenv("CNI_ARGS"); s != "" {
		for _, kv := range strings.Split(s, ";") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("CNI_ARGS: %q is not K=V", kv)
			}
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("CAP_ARGS: %w", err)
		}
	}
	return rt, nil
}

// eachPlugin runs command (STATUS or GC, CNI 1.1.0) on every plugin of the
// list in order, as libcni 1.2's GetStatusNetworkList and GCNetworkList do:
// each plugin's configuration with the list's name and cniVersion and the
// injected keys, no CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME. STATUS stops
// at the first error; GC asks every plugin and joins the errors.
func eachPlugin(ctx context.Context, list *libcni.NetworkConfigList, paths []string, command string, inject map[string]interface{}) error {
	ok, err := version.GreaterThanOrEqualTo(list.CNIVersion, "1.1.0")
	if err != nil {
		return fmt.Errorf("the list's cniVersion %q: %w", list.CNIVersion, err)
	}
	if !ok {
		return fmt.Errorf("%s needs a list of cniVersion 1.1.0 or later; this one is %q", command, list.CNIVersion)
	}
	var errs []error
	for _, plugin := range list.Plugins {
		values := map[string]interface{}{"name": list.Name, "cniVersion": list.CNIVersion}
		for k, v := range inject {
			values[k] = v
		}
		conf, err := libcni.InjectConf(plugin, values)
		if err != nil {
			return fmt.Errorf("plugin %s: %w", plugin.Network.Type, err)
		}
		path, err := invoke.FindInPath(plugin.Network.Type, paths)
		if err != nil {
			return err
		}
		args := &invoke.Args{Command: command, Path: strings.Join(paths, string(os.PathListSeparator))}
		if err := invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, nil); err != nil {
			err = fmt.Errorf("plugin %s: %w", plugin.Network.Type, err)
			if command == "STATUS" {
				return err
			}
			errs = append(errs, err)
		}
	}
	return joinErrors(errs)
}

// joinErrors is errors.Join, which Go 1.19 (Debian 12) does not have.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

func badUsage(msg string) {
	if msg != "" {
		fmt.Fprintln(os.Stderr, "cni-runtime:", msg)
	}
	fmt.Fprintln(os.Stderr, usage)
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cni-runtime:", err)
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		if out, jerr := json.Marshal(cniErr); jerr == nil {
			fmt.Println(string(out))
		}
	}
	os.Exit(1)
}
