//! Which inbound text frames are control messages (section 2 of the
//! contract), read in one streaming pass: the classifier every frame the
//! server reads goes through, and its public form [`is_control_message`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
#[cfg(feature = "client")]
use serde_json::{Map, Value};

use super::CONTROL_TYPE_PREFIX;

/// Correlation ids longer than this are refused rather than echoed, so a
/// client cannot make the server reflect arbitrary amounts of data.
const MAX_ID_BYTES: usize = 128;

/// What one inbound text frame is, according to section 2 of the contract.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Classified {
    /// Belongs to the application; passes through untouched.
    Application,
    /// A well-formed `auth.renew`.
    Renew { token: String, id: Option<String> },
    /// An `auth.*` message that cannot be acted upon.
    Invalid {
        id: Option<String>,
        reason: InvalidControl,
    },
}

/// Why a control message was answered with `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvalidControl {
    UnknownType,
    MissingToken,
    BadId,
    TooLarge,
}

impl InvalidControl {
    pub(crate) const fn description(self) -> &'static str {
        match self {
            InvalidControl::UnknownType => "unknown control message type",
            InvalidControl::MissingToken => "token must be a string",
            InvalidControl::BadId => "id must be a string of at most 128 bytes",
            InvalidControl::TooLarge => "control message too large",
        }
    }
}

/// Decides whether a text frame is a control message, and parses it if so.
///
/// A control message is a JSON object whose `"type"` member is a string
/// starting with `auth.`. The pre-filter keeps application traffic off the
/// JSON parser without ever missing a control message: after the opening
/// `{`, the text must contain `auth.` literally or a `\u` escape (the only
/// way JSON can spell those characters otherwise).
///
/// Past the pre-filter, one streaming pass over the top-level members decides
/// (see [`scan`]); it builds no tree, so a large application frame costs a
/// single validating skim. The token of a frame over `max_control_bytes` is
/// skipped, not copied; only a short `id` is kept, to echo in the refusal.
pub(crate) fn classify(text: &str, max_control_bytes: usize) -> Classified {
    let too_large = text.len() > max_control_bytes;
    let capture = if too_large {
        Capture::Id
    } else {
        Capture::IdAndToken
    };
    let Some(scan) = scan(text, capture) else {
        return Classified::Application;
    };
    let is_renew = match scan.kind {
        Kind::NotControl => return Classified::Application,
        Kind::Renew => true,
        Kind::OtherControl => false,
    };
    let id = match scan.id {
        Id::Absent => None,
        Id::Usable(id) => Some(id),
        Id::Bad => {
            return Classified::Invalid {
                id: None,
                reason: InvalidControl::BadId,
            };
        }
    };
    let invalid = |id, reason| Classified::Invalid { id, reason };
    if too_large {
        return invalid(id, InvalidControl::TooLarge);
    }
    if !is_renew {
        return invalid(id, InvalidControl::UnknownType);
    }
    match scan.token {
        Some(token) => Classified::Renew { token, id },
        None => invalid(id, InvalidControl::MissingToken),
    }
}

/// Whether a text frame is a control message (section 2 of the contract):
/// a JSON object whose `"type"` is a string starting with `auth.`.
/// Binary frames never are.
///
/// This is the decision the server makes for every inbound text frame: one
/// streaming pass over the top-level members that builds no tree, whatever
/// the frame's size.
///
/// ```
/// use axum_ws_auth::protocol::is_control_message;
///
/// assert!(is_control_message(r#"{"type":"auth.renew","token":"t"}"#));
/// assert!(!is_control_message(r#"{"type":"chat","text":"auth.renew"}"#));
/// assert!(!is_control_message("auth.renew"));
/// ```
pub fn is_control_message(text: &str) -> bool {
    scan(text, Capture::Nothing).is_some_and(|scan| scan.kind != Kind::NotControl)
}

/// The JSON object of a control message, or `None` for an application frame.
///
/// The client uses it on server messages; the tree is built only once the
/// streaming pass has found a control message.
#[cfg(feature = "client")]
pub(crate) fn control_object(text: &str) -> Option<Map<String, Value>> {
    if !is_control_message(text) {
        return None;
    }
    serde_json::from_str(text).ok()
}

fn may_be_control(text: &str) -> bool {
    let body = text.trim_start_matches([' ', '\t', '\n', '\r']);
    body.starts_with('{') && (body.contains(CONTROL_TYPE_PREFIX) || body.contains("\\u"))
}

/// The longest JSON text of an `id` string that can still decode to at most
/// [`MAX_ID_BYTES`]: every byte spelled as a six-byte `\u` escape, plus quotes.
const MAX_ID_JSON_BYTES: usize = MAX_ID_BYTES * 6 + 2;

/// Which members [`scan`] keeps; everything else is skipped unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Nothing,
    Id,
    IdAndToken,
}

/// What the `"type"` member says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Absent, not a string, or a string without the `auth.` prefix.
    #[default]
    NotControl,
    /// Exactly `auth.renew`.
    Renew,
    /// Any other `auth.*` string.
    OtherControl,
}

/// The `"id"` member.
#[derive(Debug, Default)]
enum Id {
    #[default]
    Absent,
    /// A string of at most [`MAX_ID_BYTES`].
    Usable(String),
    /// Anything else: not a string, too long, or not decodable.
    Bad,
}

/// The members of a top-level JSON object that matter to the contract. As in
/// a `serde_json::Map`, the last occurrence of a duplicated key wins.
#[derive(Debug, Default)]
struct Scan {
    kind: Kind,
    /// The last `"token"` if it was a string (and captured).
    token: Option<String>,
    id: Id,
}

/// One streaming pass over a frame that passes the pre-filter: `None` unless
/// the whole text is one JSON object (trailing whitespace allowed).
///
/// Keys are compared in place unless they contain escapes (then serde_json
/// decodes them into its scratch buffer), so `"\u0074ype"` is `type`. That
/// scratch buffer, also one byte per nesting level of skipped values, is the
/// only memory the pass uses for an application frame. The `type` value is decoded only if it is a string; every other
/// value is skipped with [`IgnoredAny`], which validates JSON syntax without
/// building anything. `token` and `id` are read as raw JSON text, skipped the
/// same way, and decoded on their own afterwards, so whether a frame is a
/// control message never depends on what is captured.
fn scan(text: &str, capture: Capture) -> Option<Scan> {
    if !may_be_control(text) {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let scan = de.deserialize_map(ScanVisitor { capture }).ok()?;
    de.end().ok()?;
    Some(scan)
}

struct ScanVisitor {
    capture: Capture,
}

impl<'de> Visitor<'de> for ScanVisitor {
    type Value = Scan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut scan = Scan::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => scan.kind = map.next_value::<TypeValue>()?.0,
                Key::Token if self.capture == Capture::IdAndToken => {
                    scan.token = decode_token(map.next_value::<&'de RawValue>()?);
                }
                Key::Id if self.capture != Capture::Nothing => {
                    scan.id = decode_id(map.next_value::<&'de RawValue>()?);
                }
                Key::Token | Key::Id | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(scan)
    }
}

/// A top-level key, matched on its decoded text.
enum Key {
    Type,
    Token,
    Id,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "type" => Key::Type,
            "token" => Key::Token,
            "id" => Key::Id,
            _ => Key::Other,
        })
    }
}

/// The `"type"` value, classified while it is read: a string is checked in
/// place (borrowed, or in serde_json's scratch buffer if escaped), anything
/// else is skipped.
struct TypeValue(Kind);

impl<'de> Deserialize<'de> for TypeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TypeVisitor)
    }
}

struct TypeVisitor;

impl<'de> Visitor<'de> for TypeVisitor {
    type Value = TypeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, kind: &str) -> Result<TypeValue, E> {
        Ok(TypeValue(if kind == "auth.renew" {
            Kind::Renew
        } else if kind.starts_with(CONTROL_TYPE_PREFIX) {
            Kind::OtherControl
        } else {
            Kind::NotControl
        }))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TypeValue, E> {
        Ok(TypeValue(Kind::NotControl))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TypeValue, E> {
        Ok(TypeValue(Kind::NotControl))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TypeValue, E> {
        Ok(TypeValue(Kind::NotControl))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TypeValue, E> {
        Ok(TypeValue(Kind::NotControl))
    }

    fn visit_unit<E: de::Error>(self) -> Result<TypeValue, E> {
        Ok(TypeValue(Kind::NotControl))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TypeValue, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(TypeValue(Kind::NotControl))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TypeValue, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(TypeValue(Kind::NotControl))
    }
}

/// The token if the raw value is a JSON string that decodes.
fn decode_token(raw: &RawValue) -> Option<String> {
    let raw = raw.get();
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str(raw).ok()
}

/// The id if the raw value is a JSON string of at most [`MAX_ID_BYTES`]
/// decoded; longer text is refused before it is decoded.
fn decode_id(raw: &RawValue) -> Id {
    let raw = raw.get();
    if !raw.starts_with('"') || raw.len() > MAX_ID_JSON_BYTES {
        return Id::Bad;
    }
    match serde_json::from_str::<String>(raw) {
        Ok(id) if id.len() <= MAX_ID_BYTES => Id::Usable(id),
        _ => Id::Bad,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use crate::testing::Rng;

    use super::*;

    const LIMIT: usize = 16 * 1024;

    fn renew(token: &str, id: Option<&str>) -> Classified {
        Classified::Renew {
            token: token.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn renew_messages_are_recognised() {
        assert_eq!(
            classify(r#"{"type":"auth.renew","token":"a.b.c"}"#, LIMIT),
            renew("a.b.c", None)
        );
        assert_eq!(
            classify(
                " \n{\"id\":\"7\",\"token\":\"a.b.c\",\"type\":\"auth.renew\"}",
                LIMIT
            ),
            renew("a.b.c", Some("7"))
        );
    }

    #[test]
    fn escaped_type_is_still_a_control_message() {
        assert_eq!(
            classify(r#"{"type":"\u0061uth.renew","token":"t"}"#, LIMIT),
            renew("t", None)
        );
        assert_eq!(
            classify(r#"{"\u0074ype":"auth.renew","token":"t"}"#, LIMIT),
            renew("t", None)
        );
    }

    #[test]
    fn application_frames_pass_through() {
        for text in [
            "hello",
            "",
            "claims",
            r#"{"type":"chat","body":"auth.renew"}"#,
            r#"{"type":"Auth.renew","token":"t"}"#,
            r#"{"kind":"auth.renew","token":"t"}"#,
            r#"{"type":["auth.renew"]}"#,
            r#"[{"type":"auth.renew"}]"#,
            r#"{"type":"auth.renew","token":"t""#,
            "\"auth.renew\"",
            r#"{"type": "auth"}"#,
        ] {
            assert_eq!(classify(text, LIMIT), Classified::Application, "{text}");
        }
    }

    #[test]
    fn invalid_control_messages_keep_their_id() {
        let invalid = |id: Option<&str>, reason| Classified::Invalid {
            id: id.map(Into::into),
            reason,
        };
        assert_eq!(
            classify(r#"{"type":"auth.renew","id":"x"}"#, LIMIT),
            invalid(Some("x"), InvalidControl::MissingToken)
        );
        assert_eq!(
            classify(r#"{"type":"auth.renew","token":42}"#, LIMIT),
            invalid(None, InvalidControl::MissingToken)
        );
        assert_eq!(
            classify(r#"{"type":"auth.logout","id":"y"}"#, LIMIT),
            invalid(Some("y"), InvalidControl::UnknownType)
        );
        assert_eq!(
            classify(r#"{"type":"auth.renew","token":"t","id":5}"#, LIMIT),
            invalid(None, InvalidControl::BadId)
        );
        let long_id = "i".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            classify(
                &format!(r#"{{"type":"auth.renew","token":"t","id":"{long_id}"}}"#),
                LIMIT
            ),
            invalid(None, InvalidControl::BadId)
        );
        let big = format!(
            r#"{{"type":"auth.renew","token":"{}","id":"z"}}"#,
            "a".repeat(64)
        );
        assert_eq!(
            classify(&big, 32),
            invalid(Some("z"), InvalidControl::TooLarge)
        );
    }

    #[test]
    fn duplicate_keys_last_one_wins() {
        let invalid = |id: Option<&str>, reason| Classified::Invalid {
            id: id.map(Into::into),
            reason,
        };
        for (text, expected) in [
            (
                r#"{"type":"auth.renew","type":"chat","token":"t"}"#,
                Classified::Application,
            ),
            (
                r#"{"type":"chat","type":"auth.renew","token":"t"}"#,
                renew("t", None),
            ),
            (
                r#"{"\u0074ype":"auth.renew","type":{"a":1},"token":"t"}"#,
                Classified::Application,
            ),
            (
                r#"{"token":"a","type":"auth.renew","\u0074oken":"b"}"#,
                renew("b", None),
            ),
            (
                r#"{"type":"auth.renew","token":"a","token":5}"#,
                invalid(None, InvalidControl::MissingToken),
            ),
            (
                r#"{"type":"auth.renew","token":"t","id":5,"i\u0064":"x"}"#,
                renew("t", Some("x")),
            ),
            (
                r#"{"type":"auth.renew","token":"t","id":"x","id":null}"#,
                invalid(None, InvalidControl::BadId),
            ),
        ] {
            assert_eq!(classify(text, LIMIT), expected, "{text}");
            assert_eq!(oracle::classify(text, LIMIT), expected, "oracle: {text}");
        }
    }

    #[test]
    fn type_values_that_are_not_strings_are_skipped() {
        for text in [
            r#"{"type":{"type":"auth.renew"},"token":"t"}"#,
            r#"{"type":[["auth.renew"],{"type":"auth.renew"}],"token":"t"}"#,
            r#"{"type":null,"token":"t","x":"auth."}"#,
            r#"{"type":1.5e3,"token":"t","x":"auth."}"#,
            r#"{"type":true,"token":"t","x":"auth."}"#,
        ] {
            assert_eq!(classify(text, LIMIT), Classified::Application, "{text}");
            assert!(!is_control_message(text), "{text}");
        }
    }

    /// A megabyte of application JSON that passes the pre-filter: its text
    /// contains `auth.` and escapes, and it nests close to serde_json's
    /// recursion limit of 128.
    fn big_application_frame() -> String {
        let depth = 100;
        let nested = format!(
            "{}[1,\"auth.renew\",{{\"type\":\"auth.renew\"}}]{}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let head = format!(r#"{{"type":"chat","nested":{nested},"body":""#);
        let tail = "\"}";
        let piece = "auth.renew \\u0061uth. \\\"quoted\\\" ";
        let mut frame = head;
        while frame.len() + piece.len() + tail.len() <= 1 << 20 {
            frame.push_str(piece);
        }
        frame.push_str(&"x".repeat((1 << 20) - frame.len() - tail.len()));
        frame.push_str(tail);
        frame
    }

    #[test]
    fn a_megabyte_of_application_json_is_application() {
        let frame = big_application_frame();
        assert_eq!(frame.len(), 1 << 20);
        assert!(may_be_control(&frame));
        assert!(
            oracle::control_object(&frame).is_none(),
            "valid JSON, not control"
        );
        assert!(serde_json::from_str::<Value>(&frame).is_ok());
        assert_eq!(classify(&frame, LIMIT), Classified::Application);
        assert_eq!(classify(&frame, usize::MAX), Classified::Application);
        assert!(!is_control_message(&frame));
    }

    #[test]
    fn an_oversized_renewal_is_too_large_and_keeps_its_id() {
        let token = "a".repeat(1 << 20);
        for text in [
            format!(r#"{{"type":"auth.renew","token":"{token}","id":"big"}}"#),
            format!(r#"{{"id":"big","\u0074oken":"{token}","\u0074ype":"auth.renew"}}"#),
            format!(r#"{{"type":"auth.renew","token":["{token}"],"id":"b\u0069g"}}"#),
        ] {
            assert_eq!(
                classify(&text, LIMIT),
                Classified::Invalid {
                    id: Some("big".into()),
                    reason: InvalidControl::TooLarge
                }
            );
            assert_eq!(classify(&text, LIMIT), oracle::classify(&text, LIMIT));
            assert!(is_control_message(&text));
        }
        let no_id = format!(r#"{{"type":"auth.renew","token":"{token}"}}"#);
        assert_eq!(
            classify(&no_id, LIMIT),
            Classified::Invalid {
                id: None,
                reason: InvalidControl::TooLarge
            }
        );
        let huge_id = format!(r#"{{"type":"auth.renew","token":"t","id":"{token}"}}"#);
        assert_eq!(
            classify(&huge_id, LIMIT),
            Classified::Invalid {
                id: None,
                reason: InvalidControl::BadId
            }
        );
    }

    #[test]
    fn ids_are_measured_after_decoding() {
        let escaped = "\\u0069".repeat(MAX_ID_BYTES);
        let text = format!(r#"{{"type":"auth.renew","token":"t","id":"{escaped}"}}"#);
        let expected = renew("t", Some(&"i".repeat(MAX_ID_BYTES)));
        assert_eq!(classify(&text, LIMIT), expected);
        assert_eq!(oracle::classify(&text, LIMIT), expected);
        let euros = "\\u20ac".repeat(43);
        let text = format!(r#"{{"type":"auth.renew","token":"t","id":"{euros}"}}"#);
        assert_eq!(
            classify(&text, LIMIT),
            Classified::Invalid {
                id: None,
                reason: InvalidControl::BadId
            }
        );
    }

    /// Where the streaming pass deliberately differs from the old tree
    /// parse: values it skips are checked for JSON syntax only, so a lone
    /// surrogate escape, a number beyond `f64` or nesting past serde_json's
    /// recursion limit inside them no longer turns an `auth.*` frame into
    /// application data (the prefix is reserved). The decision never depends
    /// on the size limit.
    #[test]
    fn skipped_values_are_checked_for_syntax_only() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for member in [r#""x":"\ud800""#, r#""x":1e400"#, &format!(r#""x":{deep}"#)] {
            let text = format!(r#"{{"type":"auth.renew","token":"t",{member}}}"#);
            assert!(oracle::control_object(&text).is_none(), "{text}");
            assert_eq!(classify(&text, LIMIT), renew("t", None), "{text}");
            assert!(is_control_message(&text));
            assert!(matches!(
                classify(&text, 0),
                Classified::Invalid {
                    reason: InvalidControl::TooLarge,
                    ..
                }
            ));
        }
        let text = r#"{"type":"auth.renew","token":"\ud800"}"#;
        assert_eq!(
            classify(text, LIMIT),
            Classified::Invalid {
                id: None,
                reason: InvalidControl::MissingToken
            }
        );
        for text in [
            r#"{"type":"auth.renew\ud800","token":"t"}"#,
            r#"{"\ud800":1,"type":"auth.renew","token":"t"}"#,
        ] {
            assert_eq!(classify(text, LIMIT), Classified::Application, "{text}");
        }
    }

    #[test]
    fn agrees_with_the_tree_parser() {
        let mut rng = Rng(0x5eed_c0de_2024_0001);
        // Application, Renew, then each InvalidControl.
        let mut seen = [0_usize; 6];
        for _ in 0..20_000 {
            let text = frame(&mut rng, false);
            let control = oracle::control_object(&text).is_some();
            assert_eq!(is_control_message(&text), control, "{text}");
            for limit in [
                usize::MAX,
                LIMIT,
                text.len(),
                text.len().saturating_sub(1),
                0,
            ] {
                let got = classify(&text, limit);
                assert_eq!(got, oracle::classify(&text, limit), "limit {limit}: {text}");
                seen[match &got {
                    Classified::Application => 0,
                    Classified::Renew { .. } => 1,
                    Classified::Invalid { reason, .. } => 2 + *reason as usize,
                }] += 1;
                if text.len() > limit {
                    let too_large = matches!(
                        got,
                        Classified::Invalid {
                            reason: InvalidControl::TooLarge,
                            ..
                        }
                    );
                    assert_eq!(too_large, control && oracle::id_is_usable(&text), "{text}");
                }
            }
        }
        assert!(
            seen.iter().all(|&n| n > 1_000),
            "too few of some outcome: {seen:?}"
        );
    }

    #[test]
    fn decides_the_same_at_any_limit() {
        let mut rng = Rng(0x5eed_c0de_2024_0002);
        for _ in 0..20_000 {
            let text = frame(&mut rng, true);
            let control = is_control_message(&text);
            for limit in [usize::MAX, text.len(), text.len().saturating_sub(1), 0] {
                let got = classify(&text, limit);
                assert_eq!(got != Classified::Application, control, "{text}");
            }
            if oracle::control_object(&text).is_some() {
                assert!(control, "{text}");
            }
        }
    }

    /// The classifier this module had before the streaming pass: a full
    /// `serde_json::Map` of every frame that passes the pre-filter.
    mod oracle {
        use super::*;

        pub(super) fn control_object(text: &str) -> Option<Map<String, Value>> {
            if !may_be_control(text) {
                return None;
            }
            let object = serde_json::from_str::<Map<String, Value>>(text).ok()?;
            match object.get("type") {
                Some(Value::String(kind)) if kind.starts_with(CONTROL_TYPE_PREFIX) => Some(object),
                _ => None,
            }
        }

        pub(super) fn id_is_usable(text: &str) -> bool {
            control_object(text).is_some_and(|object| match object.get("id") {
                None => true,
                Some(Value::String(id)) => id.len() <= MAX_ID_BYTES,
                Some(_) => false,
            })
        }

        pub(super) fn classify(text: &str, max_control_bytes: usize) -> Classified {
            let Some(mut object) = control_object(text) else {
                return Classified::Application;
            };
            let is_renew = object.get("type").and_then(Value::as_str) == Some("auth.renew");
            let id = match object.remove("id") {
                None => None,
                Some(Value::String(id)) if id.len() <= MAX_ID_BYTES => Some(id),
                Some(_) => {
                    return Classified::Invalid {
                        id: None,
                        reason: InvalidControl::BadId,
                    };
                }
            };
            let invalid = |reason| Classified::Invalid {
                id: id.clone(),
                reason,
            };
            if text.len() > max_control_bytes {
                return invalid(InvalidControl::TooLarge);
            }
            if !is_renew {
                return invalid(InvalidControl::UnknownType);
            }
            match object.remove("token") {
                Some(Value::String(token)) => Classified::Renew { token, id },
                _ => invalid(InvalidControl::MissingToken),
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Role {
        Type,
        Token,
        Id,
        Other,
    }

    const KEYS: &[(&str, Role)] = &[
        ("type", Role::Type),
        ("type", Role::Type),
        ("\\u0074ype", Role::Type),
        ("typ\\u0065", Role::Type),
        ("\\u0074\\u0079\\u0070\\u0065", Role::Type),
        ("token", Role::Token),
        ("token", Role::Token),
        ("\\u0074oken", Role::Token),
        ("id", Role::Id),
        ("i\\u0064", Role::Id),
        ("body", Role::Other),
        ("Type", Role::Other),
        ("type ", Role::Other),
        ("types", Role::Other),
        ("", Role::Other),
        ("auth.renew", Role::Other),
        ("\\u0069ds", Role::Other),
        ("\\\"type\\\"", Role::Other),
    ];

    /// One text frame: mostly JSON objects with the members that matter, in
    /// any order and any spelling, sometimes broken. `edgy` adds what only
    /// the old tree parse refused: lone surrogates, numbers beyond `f64`,
    /// nesting past the recursion limit.
    fn frame(rng: &mut Rng, edgy: bool) -> String {
        let mut out = String::new();
        ws(rng, &mut out);
        let array = rng.chance(3);
        out.push(if array { '[' } else { '{' });
        let members = rng.below(7);
        for i in 0..members {
            if i > 0 {
                out.push(',');
            }
            ws(rng, &mut out);
            let (key, role) = if rng.chance(85) {
                KEYS[rng.below(KEYS.len())]
            } else {
                ("k", Role::Other)
            };
            out.push('"');
            out.push_str(key);
            out.push('"');
            ws(rng, &mut out);
            out.push(':');
            ws(rng, &mut out);
            match role {
                Role::Type if rng.chance(80) => out.push_str(rng.pick(TYPES)),
                Role::Token if rng.chance(70) => token(rng, &mut out),
                Role::Id if rng.chance(70) => id(rng, &mut out),
                _ => value(rng, 0, edgy, &mut out),
            }
            ws(rng, &mut out);
        }
        out.push(if array { ']' } else { '}' });
        ws(rng, &mut out);
        if rng.chance(15) {
            corrupt(rng, &mut out);
        }
        out
    }

    const TYPES: &[&str] = &[
        "\"auth.renew\"",
        "\"auth.renew\"",
        "\"auth.renew\"",
        "\"auth.logout\"",
        "\"auth.\"",
        "\"chat\"",
        "\"Auth.renew\"",
        "\"\\u0061uth.renew\"",
        "\"auth\\u002erenew\"",
        "\"\\u0061\\u0075\\u0074\\u0068\\u002e\\u0072enew\"",
        "\"auth.renew \"",
        "\"auth\"",
        "\" auth.renew\"",
    ];

    fn token(rng: &mut Rng, out: &mut String) {
        match rng.below(4) {
            0 => out.push_str("\"a.b.c\""),
            1 => {
                out.push('"');
                out.push_str(&"t".repeat(rng.below(400)));
                out.push('"');
            }
            _ => string(rng, false, out),
        }
    }

    fn id(rng: &mut Rng, out: &mut String) {
        let body = match rng.below(9) {
            0 => "r1".to_owned(),
            1 => String::new(),
            2 => "i".repeat(MAX_ID_BYTES),
            3 => "i".repeat(MAX_ID_BYTES + 1),
            4 => "\\u0069".repeat(MAX_ID_BYTES),
            5 => "\\u0069".repeat(MAX_ID_BYTES + 1),
            6 => "é".repeat(MAX_ID_BYTES / 2 + rng.below(2)),
            7 => "\\u20ac".repeat(42 + rng.below(2)),
            _ => return string(rng, false, out),
        };
        out.push('"');
        out.push_str(&body);
        out.push('"');
    }

    fn value(rng: &mut Rng, depth: usize, edgy: bool, out: &mut String) {
        if edgy && rng.chance(5) {
            out.push_str(rng.pick(&["\"\\ud800\"", "1e400", "-1e999"]));
            return;
        }
        if edgy && depth == 0 && rng.chance(3) {
            let depth = 120 + rng.below(20);
            out.push_str(&"[".repeat(depth));
            out.push_str(&"]".repeat(depth));
            return;
        }
        let kinds = if depth < 4 { 9 } else { 7 };
        match rng.below(kinds) {
            0 => out.push_str("null"),
            1 => out.push_str(rng.pick(&["true", "false"])),
            2 => out.push_str(rng.pick(&[
                "0",
                "-1",
                "42",
                "1e3",
                "-0.5",
                "12345678901234567890",
                "3.25E-2",
                "-9223372036854775809",
            ])),
            3..=6 => string(rng, edgy, out),
            7 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(rng, out);
                    value(rng, depth + 1, edgy, out);
                    ws(rng, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(rng, out);
                    out.push('"');
                    out.push_str(KEYS[rng.below(KEYS.len())].0);
                    out.push_str("\":");
                    if rng.chance(30) {
                        out.push_str(rng.pick(TYPES));
                    } else {
                        value(rng, depth + 1, edgy, out);
                    }
                }
                out.push('}');
            }
        }
    }

    fn string(rng: &mut Rng, edgy: bool, out: &mut String) {
        const PIECES: &[&str] = &[
            "a",
            "auth.",
            "renew",
            " ",
            "é",
            "😀",
            "\\n",
            "\\t",
            "\\\"",
            "\\\\",
            "\\/",
            "\\u0061",
            "\\u0074",
            "\\u002e",
            "\\u00e9",
            "\\ud83d\\ude00",
        ];
        out.push('"');
        for _ in 0..rng.below(8) {
            out.push_str(rng.pick(PIECES));
        }
        if edgy && rng.chance(5) {
            out.push_str("\\udc00");
        }
        out.push('"');
    }

    fn ws(rng: &mut Rng, out: &mut String) {
        if rng.chance(25) {
            for _ in 0..=rng.below(3) {
                out.push_str(rng.pick(&[" ", "\n", "\t", "\r"]));
            }
        }
    }

    fn corrupt(rng: &mut Rng, out: &mut String) {
        match rng.below(4) {
            0 => {
                let mut at = rng.below(out.len() + 1);
                while !out.is_char_boundary(at) {
                    at -= 1;
                }
                out.truncate(at);
            }
            1 => out.push_str(rng.pick(&["x", "}", ",", "{}", "\"", "]", "\\u0000"])),
            2 => {
                if let Some(at) = out.rfind(['}', ']']) {
                    out.insert(at, ',');
                }
            }
            _ => {
                if let Some(at) = out.find(':') {
                    out.remove(at);
                }
            }
        }
    }

    /// A JSON object whose `"type"` is `auth.renew` is a control message
    /// however deep another member nests (past serde_json's recursion limit of
    /// 128): it never reaches the application, token and all.
    #[test]
    fn a_control_message_stays_one_however_deep_another_member_nests() {
        let depth = 130;
        let text = format!(
            r#"{{"type":"auth.renew","token":"secret.jwt.here","pad":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(
            is_control_message(&text),
            "a control message by the contract's definition is classified as application data"
        );
    }
}
