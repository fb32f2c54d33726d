//! Name and label syntax, with Kubernetes' exact messages
//! (`k8s.io/apimachinery/pkg/util/validation` and `pkg/api/validate/content`).
//!
//! Contract: each `is_*` function returns the list of messages Kubernetes
//! returns for that value (empty when valid); callers wrap each in a
//! `FieldError::invalid`. No regex engine: each pattern is matched by hand
//! and the pattern text is only quoted in the messages.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// The longest DNS-1123 label (and DNS-1035 label, label name, label value).
pub const LABEL_MAX: usize = 63;
/// The longest DNS-1123 subdomain.
pub const SUBDOMAIN_MAX: usize = 253;

/// Kubernetes' `RegexError`: `msg (e.g. 'a' or 'b', regex used for validation is 'fmt')`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn max_len_chars(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn max_len_bytes(n: usize) -> String {
    format!("must be no more than {n} bytes")
}

/// `first` and `last` from `edge`, everything between from `middle`; non-empty.
fn matches_shape(
    s: &str,
    first: impl Fn(u8) -> bool,
    middle: impl Fn(u8) -> bool,
    last: impl Fn(u8) -> bool,
) -> bool {
    let b = s.as_bytes();
    match b.len() {
        0 => false,
        1 => first(b[0]) && last(b[0]),
        n => first(b[0]) && last(b[n - 1]) && b[1..n - 1].iter().all(|&c| middle(c)),
    }
}

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns1123_label_shape(s: &str) -> bool {
    matches_shape(s, lower_alnum, |c| lower_alnum(c) || c == b'-', lower_alnum)
}

fn dns1123_subdomain_shape(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(dns1123_label_shape)
}

fn label_name_shape(s: &str) -> bool {
    let edge = |c: u8| c.is_ascii_alphanumeric();
    matches_shape(
        s,
        edge,
        |c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.',
        edge,
    )
}

/// Whether `s` is a DNS-1123 label (namespace names, port names, hostnames).
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_MAX {
        errs.push(max_len_chars(LABEL_MAX));
    }
    if !dns1123_label_shape(s) {
        if dns1123_subdomain_shape(s) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Whether `s` is a DNS-1123 subdomain (most object names, `externalName`).
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    subdomain_errors(s, max_len_chars(SUBDOMAIN_MAX))
}

fn subdomain_errors(s: &str, too_long: String) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > SUBDOMAIN_MAX {
        errs.push(too_long);
    }
    if !dns1123_subdomain_shape(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Whether `s` is a DNS-1035 label (Service names).
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_MAX {
        errs.push(max_len_chars(LABEL_MAX));
    }
    let first = |c: u8| c.is_ascii_lowercase();
    if !matches_shape(s, first, |c| lower_alnum(c) || c == b'-', lower_alnum) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Whether `s` is a label key ("qualified name": `[prefix/]name`), as used for
/// label and annotation keys, selector keys and `appProtocol`.
pub fn is_label_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in subdomain_errors(prefix, max_len_bytes(SUBDOMAIN_MAX)) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_MAX {
        errs.push(format!("name part {}", max_len_bytes(LABEL_MAX)));
    }
    if !label_name_shape(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_MSG,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Whether `s` is a label value (empty allowed).
pub fn is_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_MAX {
        errs.push(max_len_bytes(LABEL_MAX));
    }
    if !s.is_empty() && !label_name_shape(s) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Whether `s` is a port name (IANA_SVC_NAME: container port names, named
/// `targetPort`s, named NetworkPolicy ports).
pub fn is_port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len_chars(15));
    }
    if s.is_empty() || !s.bytes().all(|c| lower_alnum(c) || c == b'-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Kubernetes' `InclusiveRangeError`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Whether `port` is a valid port number (1-65535).
pub fn is_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns1123_label("web-1").is_empty());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("Web"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"],
            "Kubernetes' RegexError really prints two spaces before 'or'"
        );
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
        assert_eq!(is_dns1123_subdomain("a..b").len(), 1);
        assert!(is_dns1035_label("web").is_empty());
        assert_eq!(is_dns1035_label("1web").len(), 1);
    }

    #[test]
    fn label_keys_and_values() {
        assert!(is_label_key("app").is_empty());
        assert!(is_label_key("kubernetes.io/service-name").is_empty());
        assert!(is_label_key("A_b.c").is_empty());
        assert_eq!(is_label_key("/a"), vec!["prefix part must be non-empty"]);
        assert_eq!(is_label_key("a/b/c").len(), 1);
        assert_eq!(
            is_label_key("a/").len(),
            2,
            "empty name: non-empty and regex messages"
        );
        assert!(is_label_value("").is_empty());
        assert!(is_label_value("v1.2_x").is_empty());
        assert_eq!(is_label_value("-x").len(), 1);
        assert_eq!(
            is_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 bytes"]
        );
    }

    #[test]
    fn port_names() {
        assert!(is_port_name("http").is_empty());
        assert!(is_port_name("serve-80-tcp").is_empty());
        assert_eq!(
            is_port_name("80"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            is_port_name("a--b"),
            vec!["must not contain consecutive hyphens"]
        );
        assert_eq!(
            is_port_name("-ab"),
            vec!["must not begin or end with a hyphen"]
        );
        assert_eq!(
            is_port_name("this-is-too-long-1"),
            vec!["must be no more than 15 characters"]
        );
        assert_eq!(is_port_name("HTTP").len(), 2);
    }
}
