//! Small value types shared by the objects: Kubernetes' string enumerations,
//! `IntOrString`, and [`Refused`], the marker for Kubernetes fields weft
//! does not support.
//!
//! Contract: every enumeration decodes from any string (an unknown one is
//! kept as `Other(text)`), so a bad value is refused by validation with
//! Kubernetes' `Unsupported value` message and field path rather than by the
//! decoder; each serializes back to the exact text it was given.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A value Kubernetes does not define; validation refuses it.
            Other(String),
        }

        impl $name {
            /// The values Kubernetes defines, in its order.
            pub const KNOWN: &'static [&'static str] = &[$($text),+];

            /// The text of this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }

            /// The value for `text` (`Other` when Kubernetes does not define it).
            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_string()),
                }
            }

            /// Whether this is `Other("")`, which Kubernetes treats as unset.
            pub fn is_empty(&self) -> bool {
                matches!(self, Self::Other(s) if s.is_empty())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }
    };
}

string_enum! {
    /// A port's protocol. weft carries TCP and UDP; SCTP is refused.
    Protocol { Tcp = "TCP", Udp = "UDP", Sctp = "SCTP" }
}

string_enum! {
    /// `spec.type` of a Service.
    ServiceType {
        ClusterIp = "ClusterIP",
        NodePort = "NodePort",
        LoadBalancer = "LoadBalancer",
        ExternalName = "ExternalName",
    }
}

string_enum! {
    /// `spec.sessionAffinity` of a Service.
    SessionAffinity { ClientIp = "ClientIP", None = "None" }
}

string_enum! {
    /// `spec.externalTrafficPolicy` / `spec.internalTrafficPolicy` of a Service.
    TrafficPolicy { Cluster = "Cluster", Local = "Local" }
}

string_enum! {
    /// An IP family (`spec.ipFamilies`).
    IpFamily { IPv4 = "IPv4", IPv6 = "IPv6" }
}

string_enum! {
    /// `spec.ipFamilyPolicy` of a Service.
    IpFamilyPolicy {
        SingleStack = "SingleStack",
        PreferDualStack = "PreferDualStack",
        RequireDualStack = "RequireDualStack",
    }
}

string_enum! {
    /// `status.loadBalancer.ingress[].ipMode` of a Service.
    LoadBalancerIpMode { Vip = "VIP", Proxy = "Proxy" }
}

string_enum! {
    /// A NetworkPolicy's `policyTypes` entry.
    PolicyType { Ingress = "Ingress", Egress = "Egress" }
}

string_enum! {
    /// An EndpointSlice's `addressType`.
    AddressType { IPv4 = "IPv4", IPv6 = "IPv6", Fqdn = "FQDN" }
}

string_enum! {
    /// A Pod's `status.phase`.
    PodPhase {
        Pending = "Pending",
        Running = "Running",
        Succeeded = "Succeeded",
        Failed = "Failed",
        Unknown = "Unknown",
    }
}

string_enum! {
    /// A condition's `status`.
    ConditionStatus { True = "True", False = "False", Unknown = "Unknown" }
}

string_enum! {
    /// A Namespace's `status.phase`.
    NamespacePhase { Active = "Active", Terminating = "Terminating" }
}

string_enum! {
    /// A label selector requirement's `operator`.
    SelectorOperator { In = "In", NotIn = "NotIn", Exists = "Exists", DoesNotExist = "DoesNotExist" }
}

/// Kubernetes' `IntOrString` (`targetPort`, NetworkPolicy `port`): a number
/// or a name. JSON numbers decode as `Int` (they must fit an int32), JSON
/// strings as `Str` (even `"80"`, as Kubernetes does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntOrString {
    /// A number.
    Int(i32),
    /// A name.
    Str(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(v) => write!(f, "{v}"),
            IntOrString::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(v) => s.serialize_i32(*v),
            IntOrString::Str(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an int32 or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A Kubernetes field weft does not support. Decoding accepts any value so
/// that validation can refuse it by name (`Forbidden: not supported by
/// weft`) instead of calling it unknown; it is never serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(());

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read through (not `IgnoredAny`, which the unknown-field detector
        // would report): the field is known, just not supported.
        serde_json::Value::deserialize(d)?;
        Ok(Refused(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_any_text() {
        assert_eq!(Protocol::parse("TCP"), Protocol::Tcp);
        assert_eq!(Protocol::parse("tcp"), Protocol::Other("tcp".into()));
        let v: ServiceType = serde_json::from_str("\"NodePort\"").unwrap();
        assert_eq!(v, ServiceType::NodePort);
        assert_eq!(
            serde_json::to_string(&ServiceType::Other("X".into())).unwrap(),
            "\"X\""
        );
        assert!(ServiceType::Other(String::new()).is_empty());
    }

    #[test]
    fn int_or_string() {
        let v: IntOrString = serde_json::from_str("8080").unwrap();
        assert_eq!(v, IntOrString::Int(8080));
        let v: IntOrString = serde_json::from_str("\"80\"").unwrap();
        assert_eq!(v, IntOrString::Str("80".into()));
        assert!(serde_json::from_str::<IntOrString>("4294967296").is_err());
        assert!(serde_json::from_str::<IntOrString>("1.5").is_err());
        assert_eq!(serde_json::to_string(&IntOrString::Int(80)).unwrap(), "80");
    }
}
