//! Field paths and field errors, formatted exactly as Kubernetes'
//! `k8s.io/apimachinery/pkg/util/validation/field` formats them.
//!
//! Contract:
//! - [`FieldPath`] prints as Kubernetes' `field.Path`: `spec.ports[0].port`,
//!   map keys in brackets (`metadata.labels[app]`).
//! - [`FieldError`]'s `Display` is `field.Error.Error()`: `<path>: <type>`,
//!   then `: <value>` for the value-carrying types (ints and bools bare,
//!   strings Go-quoted, anything else as compact JSON), then `: <detail>`
//!   when there is one. `Required`, `Forbidden` and `Too long` never print a
//!   value.
//! - [`aggregate`] joins several errors as Kubernetes' `utilerrors.Aggregate`:
//!   one error alone, several in `[a, b]`, duplicates dropped.

use std::fmt;

/// A path to a field, as Kubernetes prints it (`spec.ports[0].targetPort`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at a top-level field (`metadata`, `spec`).
    pub fn new(root: &str) -> Self {
        FieldPath(root.to_string())
    }

    /// The path of the whole object (prints as an empty string).
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// `self.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// `self[index]`.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// `self[key]` (a map key).
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of refusal a [`FieldError`] is (Kubernetes' `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// "Not found".
    NotFound,
    /// "Required value": a needed field is missing.
    Required,
    /// "Duplicate value": a value that must be unique is repeated.
    Duplicate,
    /// "Invalid value": malformed or out of range.
    Invalid,
    /// "Unsupported value": not one of an enumeration's values.
    NotSupported,
    /// "Forbidden": valid syntax, not allowed here.
    Forbidden,
    /// "Too long".
    TooLong,
    /// "Too many": a list over its size limit.
    TooMany,
    /// "Internal error".
    Internal,
}

impl ErrorType {
    /// The text Kubernetes prints for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// The offending value of a [`FieldError`], printed as Go's `field.Error` does.
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// No value (Required, Forbidden, Too long, Internal).
    None,
    /// An integer, printed bare.
    Int(i64),
    /// A boolean, printed bare.
    Bool(bool),
    /// A string, printed Go-quoted (`"abc"`).
    Str(String),
    /// Any other value, printed as compact JSON (`["10.0.0.1"]`).
    Json(serde_json::Value),
    /// A value already rendered as Go renders it (printed verbatim), for
    /// Go structs whose field order JSON maps would not keep.
    Raw(String),
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}
impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}
impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::Str(s.clone())
    }
}
impl From<i64> for BadValue {
    fn from(v: i64) -> Self {
        BadValue::Int(v)
    }
}
impl From<i32> for BadValue {
    fn from(v: i32) -> Self {
        BadValue::Int(v.into())
    }
}
impl From<bool> for BadValue {
    fn from(v: bool) -> Self {
        BadValue::Bool(v)
    }
}
impl From<&[String]> for BadValue {
    fn from(v: &[String]) -> Self {
        BadValue::Json(serde_json::Value::from(v.to_vec()))
    }
}

/// One refusal: a field path, a type, the bad value and a detail.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The path of the offending field.
    pub field: FieldPath,
    /// The kind of refusal.
    pub error_type: ErrorType,
    /// The offending value (printed for value-carrying types only).
    pub bad_value: BadValue,
    /// Free text after the value; may be empty.
    pub detail: String,
}

impl FieldError {
    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(
        field: &FieldPath,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::with(field, ErrorType::Invalid, value.into(), detail.into())
    }

    /// `Required value[: <detail>]`.
    pub fn required(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::with(field, ErrorType::Required, BadValue::None, detail.into())
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::with(field, ErrorType::Forbidden, BadValue::None, detail.into())
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::with(field, ErrorType::Duplicate, value.into(), String::new())
    }

    /// `Unsupported value: <value>: supported values: "A", "B"`.
    pub fn not_supported(
        field: &FieldPath,
        value: impl Into<BadValue>,
        supported: &[&str],
    ) -> Self {
        Self::with(
            field,
            ErrorType::NotSupported,
            value.into(),
            supported_values(supported),
        )
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(field: &FieldPath, actual: usize, max: usize) -> Self {
        let items = if max == 1 { "item" } else { "items" };
        Self::with(
            field,
            ErrorType::TooMany,
            BadValue::Int(i64::try_from(actual).unwrap_or(i64::MAX)),
            format!("must have at most {max} {items}"),
        )
    }

    /// An error of any type.
    pub fn with(
        field: &FieldPath,
        error_type: ErrorType,
        bad_value: BadValue,
        detail: String,
    ) -> Self {
        FieldError {
            field: field.clone(),
            error_type,
            bad_value,
            detail,
        }
    }

    /// The message without the field path (Kubernetes' `ErrorBody`).
    pub fn body(&self) -> String {
        let mut s = self.error_type.as_str().to_string();
        let prints_value = !matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        if prints_value {
            match &self.bad_value {
                BadValue::None => {}
                BadValue::Int(v) => s.push_str(&format!(": {v}")),
                BadValue::Bool(v) => s.push_str(&format!(": {v}")),
                BadValue::Str(v) => s.push_str(&format!(": {}", go_quote(v))),
                BadValue::Json(v) => s.push_str(&format!(": {v}")),
                BadValue::Raw(v) => s.push_str(&format!(": {v}")),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// `supported values: "A", "B"` (empty when the list is empty).
pub fn supported_values(values: &[&str]) -> String {
    if values.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("supported values: {}", quoted.join(", "))
}

/// Joins errors as Kubernetes' `utilerrors.NewAggregate(..).Error()` does:
/// a single message alone, several inside `[...]` separated by `, `, each
/// distinct message once.
pub fn aggregate<T: fmt::Display>(errors: &[T]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let msg = e.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// Quotes a string as Go's `%q` does: double quotes, `\"` and `\\`, the
/// usual short escapes, `\x..` for other control bytes, printable Unicode
/// kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_as_kubernetes() {
        let p = FieldPath::new("spec").child("ports").index(0).child("port");
        assert_eq!(p.to_string(), "spec.ports[0].port");
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("app")
                .to_string(),
            "metadata.labels[app]"
        );
        assert_eq!(
            FieldPath::root().child("addressType").to_string(),
            "addressType"
        );
    }

    #[test]
    fn bodies_print_as_kubernetes() {
        let p = FieldPath::new("spec").child("ports").index(0).child("port");
        let e = FieldError::invalid(&p, 70000, "must be between 1 and 65535, inclusive");
        assert_eq!(
            e.to_string(),
            "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        let e = FieldError::required(&FieldPath::new("spec").child("ports"), "");
        assert_eq!(e.to_string(), "spec.ports: Required value");
        let e = FieldError::not_supported(&FieldPath::new("spec").child("type"), "X", &["A", "B"]);
        assert_eq!(
            e.to_string(),
            r#"spec.type: Unsupported value: "X": supported values: "A", "B""#
        );
        let ips = vec!["10.0.0.1".to_string()];
        let e = FieldError::invalid(
            &FieldPath::new("spec").child("clusterIPs"),
            ips.as_slice(),
            "x",
        );
        assert_eq!(
            e.to_string(),
            r#"spec.clusterIPs: Invalid value: ["10.0.0.1"]: x"#
        );
        let e = FieldError::forbidden(&FieldPath::new("spec"), "no");
        assert_eq!(e.to_string(), "spec: Forbidden: no");
        let e = FieldError::too_many(&FieldPath::new("endpoints"), 1001, 1000);
        assert_eq!(
            e.to_string(),
            "endpoints: Too many: 1001: must have at most 1000 items"
        );
    }

    #[test]
    fn aggregate_as_kubernetes() {
        assert_eq!(aggregate::<String>(&[]), "");
        assert_eq!(aggregate(&["a"]), "a");
        assert_eq!(aggregate(&["a", "b", "a"]), "[a, b]");
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }
}
