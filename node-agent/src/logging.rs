//! Logging of the node binaries (`weft-agent`, `weft-cni`): `tracing` to
//! stderr, the level from `WEFT_LOG`.
//!
//! Contract:
//! - The filter is `WEFT_LOG` (e.g. `info`, `debug`,
//!   `weft_node_agent=debug`), or the binary's default level. Either way
//!   `netlink_packet_route` logs errors only: it warns about every kernel
//!   attribute whose size it does not expect (`IFLA_INET6_CONF ... expecting
//!   236, got 240` on newer kernels), several times per pod added, which
//!   says nothing about weft; `boringtun` logs nothing (it logs every
//!   timer event; the data plane logs what matters of them, rate-limited).
//!   A `WEFT_LOG` that names one of these targets itself decides for it.
//! - ANSI colours only when stderr is a terminal and `NO_COLOR` is unset,
//!   so a log written to a file or a journal holds plain text.

use std::io::IsTerminal;

/// Targets logged at a higher level than asked for, unless `WEFT_LOG`
/// names them (see the module docs): (target, level).
const QUIET_TARGETS: &[(&str, &str)] = &[
    ("netlink_packet_route", "error"),
    // boringtun logs every timer event (`HANDSHAKE(REKEY_TIMEOUT)` every
    // 5 s per unreachable peer); the data plane logs what matters of them
    // itself, per peer and rate-limited.
    ("boringtun", "off"),
];

/// The filter directives for `weft_log` (the value of `WEFT_LOG`, if set
/// and not blank) with `default` as the level otherwise.
pub fn filter_directives(weft_log: Option<&str>, default: &str) -> String {
    let mut directives = match weft_log.map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => default.to_string(),
    };
    for (target, level) in QUIET_TARGETS {
        if !directives.contains(target) {
            directives.push_str(&format!(",{target}={level}"));
        }
    }
    directives
}

/// Whether to colour log lines: only on a terminal, and never with
/// `NO_COLOR` set (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

/// Installs the global subscriber: stderr, `WEFT_LOG` or `default`, JSON
/// lines if `json`. A `WEFT_LOG` that does not parse is reported once and
/// `default` used instead.
pub fn init(default: &str, json: bool) {
    let weft_log = std::env::var("WEFT_LOG").ok();
    let directives = filter_directives(weft_log.as_deref(), default);
    let filter = match tracing_subscriber::EnvFilter::try_new(&directives) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "WEFT_LOG={:?} is not a log filter ({e}); using {default:?}",
                weft_log.unwrap_or_default()
            );
            tracing_subscriber::EnvFilter::new(filter_directives(None, default))
        }
    };
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").is_some(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_warnings_are_filtered_whatever_the_level() {
        assert_eq!(
            filter_directives(None, "info"),
            "info,netlink_packet_route=error,boringtun=off"
        );
        assert_eq!(
            filter_directives(Some("debug"), "info"),
            "debug,netlink_packet_route=error,boringtun=off"
        );
        assert_eq!(
            filter_directives(Some("  "), "warn"),
            "warn,netlink_packet_route=error,boringtun=off"
        );
        // Asking for the target explicitly wins.
        assert_eq!(
            filter_directives(Some("info,netlink_packet_route=debug"), "info"),
            "info,netlink_packet_route=debug,boringtun=off"
        );
    }

    /// A subscriber built like [`init`]'s, writing into a buffer: the
    /// netlink warning is dropped, an error of that target and weft's own
    /// warning are kept, without colour codes.
    #[test]
    fn the_filter_drops_the_targets_warnings_only() {
        use std::sync::{Arc, Mutex};
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = {
            let buf = buf.clone();
            move || Capture(buf.clone())
        };
        let filter = tracing_subscriber::EnvFilter::new(filter_directives(Some("info"), "info"));
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(use_colour(false, false))
            .with_writer(writer)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "netlink_packet_route", "IFLA_INET6_CONF: expecting 236, got 240");
            tracing::error!(target: "netlink_packet_route", "a real netlink error");
            tracing::warn!(target: "weft_node_agent", "a weft warning");
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("IFLA_INET6_CONF"), "{text}");
        assert!(text.contains("a real netlink error"), "{text}");
        assert!(text.contains("a weft warning"), "{text}");
        assert!(!text.contains('\u{1b}'), "colour codes: {text:?}");
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, false));
        assert!(!use_colour(false, false));
        assert!(!use_colour(true, true));
        assert!(!use_colour(false, true));
    }
}
