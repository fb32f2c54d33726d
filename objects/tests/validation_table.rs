//! One case per refusal: each manifest is parsed, defaulted and validated as
//! the control plane will do it, and the test asserts the complete list of
//! errors, each message exactly as Kubernetes prints it (field path
//! included).

use weft_objects::defaults;
use weft_objects::validation::{errors, invalid_message, update_errors, ValidationContext};
use weft_objects::{parse_manifests, Object};

fn object(doc: &str) -> Object {
    let mut objs = parse_manifests(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    assert_eq!(objs.len(), 1, "{doc}");
    let mut obj = objs.remove(0);
    defaults::apply(&mut obj);
    obj
}

fn svc(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n{spec}"
    )
}

fn netpol(spec: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{spec}")
}

fn pod(spec_and_status: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop}}\n{spec_and_status}")
}

fn slice(body: &str) -> String {
    format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-abc, namespace: shop}}\n{body}")
}

const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

fn check(cases: &[(&str, String, Vec<String>)]) {
    let ctx = ValidationContext::default();
    let mut failures = Vec::new();
    for (name, doc, want) in cases {
        let got: Vec<String> = errors(&object(doc), &ctx)
            .iter()
            .map(|e| e.to_string())
            .collect();
        if &got != want {
            failures.push(format!("case {name}:\n  got:  {got:#?}\n  want: {want:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn valid_objects_pass() {
    check(&[
        ("plain service", svc("  selector: {app: web}\n  ports: [{port: 80}]\n"), vec![]),
        ("headless without ports", svc("  clusterIP: None\n  selector: {app: db}\n"), vec![]),
        ("cluster ip in range", svc("  clusterIP: 10.96.0.10\n  ports: [{port: 53, protocol: UDP}]\n"), vec![]),
        ("external name", svc("  type: ExternalName\n  externalName: db.example.com.\n"), vec![]),
        (
            "load balancer local",
            svc("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 30500\n  ports: [{port: 80, nodePort: 30080}]\n"),
            vec![],
        ),
        ("deny all", netpol("  podSelector: {}\n  policyTypes: [Ingress, Egress]\n"), vec![]),
        ("pod", pod("spec:\n  nodeName: n1\n  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]\nstatus:\n  podIP: 10.244.1.5\n"), vec![]),
    ]);
}

#[test]
fn service_refusals() {
    check(&[
        (
            "port out of range",
            svc("  ports: [{port: 70000, targetPort: 80}]\n"),
            s(&[&format!("spec.ports[0].port: Invalid value: 70000: {PORT_RANGE}")]),
        ),
        (
            "port zero (targetPort defaults to it)",
            svc("  ports: [{port: 0}]\n"),
            s(&[
                &format!("spec.ports[0].port: Invalid value: 0: {PORT_RANGE}"),
                &format!("spec.ports[0].targetPort: Invalid value: 0: {PORT_RANGE}"),
            ]),
        ),
        ("ports required", svc("  selector: {app: web}\n"), s(&["spec.ports: Required value"])),
        (
            "port names required with several ports",
            svc("  ports: [{name: a, port: 80}, {port: 81}]\n"),
            s(&["spec.ports[1].name: Required value"]),
        ),
        (
            "duplicate port names",
            svc("  ports: [{name: http, port: 80}, {name: http, port: 81}]\n"),
            s(&[r#"spec.ports[1].name: Duplicate value: "http""#]),
        ),
        (
            "port name not a DNS-1123 label",
            svc("  ports: [{name: HTTP, port: 80}]\n"),
            s(&[r#"spec.ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#]),
        ),
        (
            "targetPort name syntax",
            svc("  ports: [{port: 80, targetPort: web--http}]\n"),
            s(&[r#"spec.ports[0].targetPort: Invalid value: "web--http": must not contain consecutive hyphens"#]),
        ),
        (
            "targetPort name too long and without letters",
            svc("  ports: [{port: 80, targetPort: \"8080808080808080\"}]\n"),
            s(&[
                r#"spec.ports[0].targetPort: Invalid value: "8080808080808080": must be no more than 15 characters"#,
                r#"spec.ports[0].targetPort: Invalid value: "8080808080808080": must contain at least one letter (a-z)"#,
            ]),
        ),
        (
            "targetPort number out of range",
            svc("  ports: [{port: 80, targetPort: 65536}]\n"),
            s(&[&format!("spec.ports[0].targetPort: Invalid value: 65536: {PORT_RANGE}")]),
        ),
        (
            "SCTP",
            svc("  ports: [{port: 80, protocol: SCTP}]\n"),
            s(&[r#"spec.ports[0].protocol: Unsupported value: "SCTP": weft does not support SCTP: supported values: "TCP", "UDP""#]),
        ),
        (
            "unknown protocol",
            svc("  ports: [{port: 80, protocol: HTTP}]\n"),
            s(&[r#"spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "TCP", "UDP""#]),
        ),
        (
            "duplicate port and protocol",
            svc("  ports: [{name: a, port: 80}, {name: b, port: 80}]\n"),
            s(&[r#"spec.ports[1]: Duplicate value: {"Name":"","Protocol":"TCP","AppProtocol":null,"Port":80,"TargetPort":0,"NodePort":0}"#]),
        ),
        (
            "appProtocol",
            svc("  ports: [{port: 80, appProtocol: \"a/b/c\"}]\n"),
            s(&[r#"spec.ports[0].appProtocol: Invalid value: "a/b/c": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#]),
        ),
        (
            "unknown type",
            svc("  type: Ingress\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.type: Unsupported value: "Ingress": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#]),
        ),
        (
            "nodePort outside the range",
            svc("  type: NodePort\n  ports: [{port: 80, nodePort: 8080}]\n"),
            s(&["spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"]),
        ),
        (
            "nodePort on a ClusterIP Service",
            svc("  ports: [{port: 80, nodePort: 30080}]\n"),
            s(&["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
        ),
        (
            "duplicate nodePort",
            svc("  type: NodePort\n  ports: [{name: a, port: 80, nodePort: 30080}, {name: b, port: 81, nodePort: 30080}]\n"),
            s(&["spec.ports[1].nodePort: Duplicate value: 30080"]),
        ),
        (
            "clusterIP outside the service CIDR",
            svc("  clusterIP: 10.0.0.1\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.clusterIPs: Invalid value: ["10.0.0.1"]: failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"#]),
        ),
        (
            "clusterIP is the network address",
            svc("  clusterIP: 10.96.0.0\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.clusterIPs: Invalid value: ["10.96.0.0"]: failed to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12"#]),
        ),
        (
            "clusterIP of a family the cluster lacks",
            svc("  clusterIP: fd00::10\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.clusterIPs: Invalid value: ["fd00::10"]: failed to allocate IP fd00::10: IPv6 is not configured on this cluster"#]),
        ),
        (
            "clusterIP not an IP",
            svc("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#]),
        ),
        (
            "clusterIPs disagree with clusterIP",
            svc("  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.11]\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.clusterIPs: Invalid value: ["10.96.0.11"]: first value must match `clusterIP`"#]),
        ),
        (
            "clusterIPs without clusterIP",
            svc("  clusterIPs: [10.96.0.11]\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.clusterIPs: Invalid value: ["10.96.0.11"]: must be empty when `clusterIP` is not specified"#]),
        ),
        (
            "RequireDualStack on a single-stack cluster",
            svc("  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#]),
        ),
        (
            "headless NodePort",
            svc("  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#]),
        ),
        ("ExternalName without externalName", svc("  type: ExternalName\n"), s(&["spec.externalName: Required value"])),
        (
            "ExternalName not a DNS name",
            svc("  type: ExternalName\n  externalName: db_1.example.com\n"),
            s(&[r#"spec.externalName: Invalid value: "db_1.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#]),
        ),
        (
            "ExternalName with a clusterIP",
            svc("  type: ExternalName\n  externalName: db.example.com\n  clusterIP: 10.96.0.10\n"),
            s(&["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]),
        ),
        (
            "sessionAffinity unknown",
            svc("  sessionAffinity: Cookie\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", "None""#]),
        ),
        (
            "affinity timeout",
            svc("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n  ports: [{port: 80}]\n"),
            s(&["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"]),
        ),
        (
            "externalTrafficPolicy on an internal Service",
            svc("  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#]),
        ),
        (
            "externalTrafficPolicy unknown",
            svc("  type: NodePort\n  externalTrafficPolicy: Global\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", "Local""#]),
        ),
        (
            "internalTrafficPolicy unknown",
            svc("  internalTrafficPolicy: Node\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local""#]),
        ),
        (
            "healthCheckNodePort without LoadBalancer/Local",
            svc("  type: NodePort\n  healthCheckNodePort: 30500\n  ports: [{port: 80}]\n"),
            s(&["spec.healthCheckNodePort: Invalid value: 30500: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"]),
        ),
        (
            "healthCheckNodePort outside the range",
            svc("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 10256\n  ports: [{port: 80}]\n"),
            s(&["spec.healthCheckNodePort: Invalid value: 10256: failed to allocate requested HealthCheck NodePort 10256: provided port is not in the valid range. The range of valid ports is 30000-32767"]),
        ),
        (
            "externalIPs",
            svc("  externalIPs: [192.0.2.300, 127.0.0.1]\n  ports: [{port: 80}]\n"),
            s(&[
                r#"spec.externalIPs[0]: Invalid value: "192.0.2.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                r#"spec.externalIPs[1]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#,
            ]),
        ),
        (
            "allocateLoadBalancerNodePorts on ClusterIP",
            svc("  allocateLoadBalancerNodePorts: false\n  ports: [{port: 80}]\n"),
            s(&["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
        ),
        (
            "loadBalancerSourceRanges",
            svc("  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0/8]\n  ports: [{port: 80}]\n"),
            s(&["spec.loadBalancerSourceRanges: Forbidden: not supported by weft: weft does not filter LoadBalancer clients by source"]),
        ),
        (
            "selector value",
            svc("  selector: {app: -web}\n  ports: [{port: 80}]\n"),
            s(&[r#"spec.selector: Invalid value: "-web": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#]),
        ),
    ]);
}

#[test]
fn metadata_refusals() {
    check(&[
        (
            "service name is a DNS-1035 label",
            "apiVersion: v1\nkind: Service\nmetadata: {name: 1web, namespace: shop}\nspec: {ports: [{port: 80}]}\n".into(),
            s(&[r#"metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#]),
        ),
        (
            "name required",
            "apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\nspec: {ports: [{port: 80}]}\n".into(),
            s(&["metadata.name: Required value: name or generateName is required"]),
        ),
        (
            "namespace required",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n".into(),
            s(&["metadata.namespace: Required value"]),
        ),
        (
            "generateName",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop, generateName: web-}\nspec: {ports: [{port: 80}]}\n".into(),
            s(&["metadata.generateName: Forbidden: not supported by weft: weft does not generate names: set metadata.name"]),
        ),
        (
            "label key",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {\"/x\": a}}\n".into(),
            s(&[r#"metadata.labels: Invalid value: "/x": prefix part must be non-empty"#]),
        ),
        (
            "namespace name with a dot",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n".into(),
            s(&[r#"metadata.name: Invalid value: "a.b": must not contain dots"#]),
        ),
        (
            "annotation key",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, annotations: {\"a b\": x}}\n".into(),
            s(&[r#"metadata.annotations: Invalid value: "a b": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#]),
        ),
    ]);
}

#[test]
fn network_policy_refusals() {
    let peer = |p: &str| {
        netpol(&format!(
            "  podSelector: {{}}\n  ingress:\n  - from:\n    - {p}\n"
        ))
    };
    let port = |p: &str| {
        netpol(&format!(
            "  podSelector: {{}}\n  egress:\n  - ports:\n    - {p}\n"
        ))
    };
    check(&[
        (
            "ipBlock cidr invalid",
            peer("ipBlock: {cidr: 10.0.0.0/33}"),
            s(&[r#"spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#]),
        ),
        (
            "ipBlock cidr with host bits",
            peer("ipBlock: {cidr: 10.0.0.1/8}"),
            s(&[r#"spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.1/8": must not have bits set beyond the prefix length"#]),
        ),
        ("ipBlock cidr missing", peer("ipBlock: {except: []}"), s(&["spec.ingress[0].from[0].ipBlock.cidr: Required value"])),
        (
            "except equal to cidr",
            peer("ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}"),
            s(&["spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"10.0.0.0/8\": must be a strict subset of `cidr`"]),
        ),
        (
            "except outside cidr",
            peer("ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16, 10.1.0.0/16]}"),
            s(&["spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"192.168.0.0/16\": must be a strict subset of `cidr`"]),
        ),
        (
            "except of the other family",
            peer("ipBlock: {cidr: 10.0.0.0/8, except: [\"fd00::/64\"]}"),
            s(&["spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"fd00::/64\": must be a strict subset of `cidr`"]),
        ),
        (
            "except not a CIDR",
            peer("ipBlock: {cidr: 10.0.0.0/8, except: [10.1.2.3]}"),
            s(&[r#"spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.1.2.3": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#]),
        ),
        ("empty peer", peer("{}"), s(&["spec.ingress[0].from[0]: Required value: must specify a peer"])),
        (
            "ipBlock with another peer",
            peer("{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}"),
            s(&["spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"]),
        ),
        (
            "selector operator",
            peer("podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}"),
            s(&[r#"spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: Invalid value: "Equals": not a valid selector operator"#]),
        ),
        (
            "In without values",
            peer("namespaceSelector: {matchExpressions: [{key: a, operator: In}]}"),
            s(&["spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]),
        ),
        (
            "Exists with values",
            peer("podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}"),
            s(&["spec.ingress[0].from[0].podSelector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"]),
        ),
        (
            "selector value",
            peer("podSelector: {matchExpressions: [{key: a, operator: NotIn, values: [\"b c\"]}]}"),
            s(&[r#"spec.ingress[0].from[0].podSelector.matchExpressions[0].values[0]: Invalid value: "b c": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#]),
        ),
        (
            "endPort below port",
            port("{port: 80, endPort: 79}"),
            s(&["spec.egress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`"]),
        ),
        (
            "endPort with a named port",
            port("{port: http, endPort: 90}"),
            s(&["spec.egress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric"]),
        ),
        (
            "endPort without port",
            port("{endPort: 90}"),
            s(&["spec.egress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is not specified"]),
        ),
        (
            "port out of range",
            port("{port: 0}"),
            s(&[&format!("spec.egress[0].ports[0].port: Invalid value: 0: {PORT_RANGE}")]),
        ),
        (
            "endPort out of range",
            port("{port: 80, endPort: 70000}"),
            s(&[&format!("spec.egress[0].ports[0].endPort: Invalid value: 70000: {PORT_RANGE}")]),
        ),
        (
            "named port syntax",
            port("{port: \"-http\"}"),
            s(&[r#"spec.egress[0].ports[0].port: Invalid value: "-http": must not begin or end with a hyphen"#]),
        ),
        (
            "protocol in lower case",
            port("{protocol: tcp, port: 80}"),
            s(&[r#"spec.egress[0].ports[0].protocol: Unsupported value: "tcp": supported values: "TCP", "UDP""#]),
        ),
        (
            "SCTP",
            port("{protocol: SCTP, port: 80}"),
            s(&[r#"spec.egress[0].ports[0].protocol: Unsupported value: "SCTP": weft does not support SCTP: supported values: "TCP", "UDP""#]),
        ),
        (
            "policyTypes value",
            netpol("  podSelector: {}\n  policyTypes: [Ingress, Both]\n"),
            s(&[r#"spec.policyTypes[1]: Unsupported value: "Both": supported values: "Ingress", "Egress""#]),
        ),
        (
            "too many policyTypes",
            netpol("  podSelector: {}\n  policyTypes: [Ingress, Egress, Ingress]\n"),
            s(&[r#"spec.policyTypes: Invalid value: ["Ingress","Egress","Ingress"]: may not specify more than two policyTypes"#]),
        ),
    ]);
}

#[test]
fn pod_and_slice_refusals() {
    check(&[
        (
            "container port zero and out of range",
            pod("spec:\n  containers: [{name: c, ports: [{containerPort: 0}, {containerPort: 70000}]}]\n"),
            s(&[
                "spec.containers[0].ports[0].containerPort: Required value",
                &format!("spec.containers[0].ports[1].containerPort: Invalid value: 70000: {PORT_RANGE}"),
            ]),
        ),
        (
            "container port names",
            pod("spec:\n  containers: [{name: c, ports: [{name: http, containerPort: 80}, {name: http, containerPort: 81}, {name: a_b, containerPort: 82}]}]\n"),
            s(&[
                r#"spec.containers[0].ports[1].name: Duplicate value: "http""#,
                r#"spec.containers[0].ports[2].name: Invalid value: "a_b": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            ]),
        ),
        (
            "duplicate container names",
            pod("spec:\n  containers: [{name: c}, {name: c}]\n"),
            s(&[r#"spec.containers[1].name: Duplicate value: "c""#]),
        ),
        (
            "pod IPs",
            pod("status:\n  podIPs: [{ip: 10.244.1.5}, {ip: 10.244.1.6}]\n"),
            s(&[r#"status.podIPs: Invalid value: [{"IP":"10.244.1.5"},{"IP":"10.244.1.6"}]: may specify no more than one IP for each IP family"#]),
        ),
        (
            "phase",
            pod("status:\n  phase: Sleeping\n"),
            s(&[r#"status.phase: Unsupported value: "Sleeping": supported values: "Pending", "Running", "Succeeded", "Failed", "Unknown""#]),
        ),
        ("slice address type", slice("endpoints: []\n"), s(&["addressType: Required value"])),
        (
            "slice endpoint without address",
            slice("addressType: IPv4\nendpoints: [{addresses: []}]\n"),
            s(&["endpoints[0].addresses: Required value: must contain at least 1 address"]),
        ),
        (
            "slice address of the wrong family",
            slice("addressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n"),
            s(&[r#"endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address"#]),
        ),
    ]);
}

fn check_updates(cases: &[(&str, String, String, Vec<String>)]) {
    let ctx = ValidationContext::default();
    let mut failures = Vec::new();
    for (name, old, new, want) in cases {
        let old = object(old);
        let mut new = object(new);
        defaults::prepare_update(&mut new, &old);
        let got: Vec<String> = update_errors(&new, &old, &ctx)
            .iter()
            .map(|e| e.to_string())
            .collect();
        if &got != want {
            failures.push(format!("case {name}:\n  got:  {got:#?}\n  want: {want:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn update_refusals() {
    let with_ip = |ip: &str| svc(&format!("  clusterIP: {ip}\n  ports: [{{port: 80}}]\n"));
    let lb_local = |hc: u16| {
        svc(&format!("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: {hc}\n  ports: [{{port: 80, nodePort: 30080}}]\n"))
    };
    check_updates(&[
        ("omitting the clusterIP keeps it", with_ip("10.96.0.10"), svc("  ports: [{port: 80}]\n"), vec![]),
        (
            "clusterIP may not change",
            with_ip("10.96.0.10"),
            with_ip("10.96.0.11"),
            s(&[r#"spec.clusterIPs[0]: Invalid value: ["10.96.0.11"]: may not change once set"#]),
        ),
        (
            "health check port may not change",
            lb_local(30500),
            lb_local(30501),
            s(&["spec.healthCheckNodePort: Forbidden: field is immutable"]),
        ),
        (
            "a pod's spec is fixed",
            pod("spec: {nodeName: n1}\n"),
            pod("spec: {nodeName: n2}\n"),
            s(&["spec: Forbidden: pod updates may not change fields other than metadata and status (re-register the pod to change its spec)"]),
        ),
        (
            "a slice's addressType is fixed",
            slice("addressType: IPv4\n"),
            slice("addressType: IPv6\n"),
            s(&[r#"addressType: Invalid value: "IPv6": field is immutable"#]),
        ),
        (
            "uid is fixed",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, uid: a}\n".into(),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, uid: b}\n".into(),
            s(&[r#"metadata.uid: Invalid value: "b": field is immutable"#]),
        ),
    ]);
}

#[test]
fn aggregated_message() {
    let obj = object(&svc(
        "  type: NodePort\n  ports: [{port: 70000, targetPort: 80, nodePort: 80}]\n",
    ));
    let errs = errors(&obj, &ValidationContext::default());
    assert_eq!(
        invalid_message(obj.kind(), obj.name(), &errs),
        format!("Service \"web\" is invalid: [spec.ports[0].port: Invalid value: 70000: {PORT_RANGE}, spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767]")
    );
    let obj = object(&netpol("  podSelector: {}\n  ingress: [{from: [{}]}]\n"));
    let errs = errors(&obj, &ValidationContext::default());
    assert_eq!(
        invalid_message(obj.kind(), obj.name(), &errs),
        "NetworkPolicy.networking.k8s.io \"p\" is invalid: spec.ingress[0].from[0]: Required value: must specify a peer"
    );
}
