//! Request bodies: `/beat` and `POST /disconnect` take either a form (what the documented Python
//! client sends) or JSON. Both become one map of fields, validated with FastAPI-shaped 422s.

use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest, ResponseError, dev::Payload};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};
use std::marker::PhantomData;

use crate::domain::ShardReport;
use crate::http::error::{BodyTooLarge, ValidationFailed, ValidationIssue, error_set};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The fields of a form or JSON body. Reading it answers with the route's error set `E`, which
/// must hold [`UnreadableBody`].
pub struct BodyFields<E> {
    fields: Map<String, Value>,
    errors: PhantomData<fn() -> E>,
}

error_set! {
    /// What reading a body refuses before the route looks at its fields.
    pub UnreadableBody {
        BodyTooLarge,
        ValidationFailed = "A body that cannot be read or parsed",
    }
}

impl<E: From<UnreadableBody> + ResponseError + 'static> FromRequest for BodyFields<E> {
    type Error = E;
    type Future = LocalBoxFuture<'static, Result<Self, E>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let encoding = if content_type.starts_with("application/x-www-form-urlencoded") {
            Encoding::Form
        } else if content_type.starts_with("application/json") {
            Encoding::Json
        } else {
            Encoding::Unstated
        };
        let payload = payload.take();
        Box::pin(async move {
            let fields = read(declared_length, payload, encoding).await?;
            Ok(BodyFields {
                fields,
                errors: PhantomData,
            })
        })
    }
}

async fn read(
    declared_length: Option<usize>,
    mut payload: Payload,
    encoding: Encoding,
) -> Result<Map<String, Value>, UnreadableBody> {
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large().into());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ValidationFailed::from(ValidationIssue::new(
                &["body"],
                "could not read the request body",
                "value_error.body",
            ))
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large().into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(parse(&body, encoding)?)
}

fn too_large() -> BodyTooLarge {
    BodyTooLarge {
        limit_bytes: MAX_BODY_BYTES,
    }
}

/// How a body says it is encoded (its `Content-Type`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Form,
    Json,
    /// No or another content type: JSON when it looks like a JSON object or array, else a form.
    Unstated,
}

fn parse(body: &[u8], encoding: Encoding) -> Result<Map<String, Value>, ValidationFailed> {
    let looks_like_json = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{' || *byte == b'[');
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let is_form = match encoding {
        Encoding::Form => true,
        Encoding::Json => false,
        Encoding::Unstated => !looks_like_json,
    };
    if is_form {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
            ValidationIssue::new(
                &["body"],
                "could not parse the form body",
                "value_error.form",
            )
        })?;
        return Ok(pairs
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => {
            Err(
                ValidationIssue::new(&["body"], "value is not a valid dict", "type_error.dict")
                    .into(),
            )
        }
        Err(error) => Err(ValidationIssue {
            loc: vec![json!("body"), json!(error.column().saturating_sub(1))],
            msg: format!("Expecting value: {error}"),
            kind: "value_error.jsondecode".into(),
        }
        .into()),
    }
}

/// The longest `process` label shardman keeps, in characters.
pub const PROCESS_LABEL_MAX_CHARS: usize = 128;

/// What is wrong with a `process` label at `loc`, if anything: it must be 1 to
/// [`PROCESS_LABEL_MAX_CHARS`] printable characters (no control characters: the label goes into
/// logs and the status page as it is). `/connect` takes it in its query, `/beat` in its body.
pub fn label_issue(loc: &[&str], label: &str) -> Option<ValidationIssue> {
    let length = label.chars().count();
    if length == 0 {
        return Some(ValidationIssue::new(
            loc,
            "ensure this value has at least 1 characters",
            "value_error.any_str.min_length",
        ));
    }
    if length > PROCESS_LABEL_MAX_CHARS {
        return Some(ValidationIssue::new(
            loc,
            &format!("ensure this value has at most {PROCESS_LABEL_MAX_CHARS} characters"),
            "value_error.any_str.max_length",
        ));
    }
    label.chars().any(char::is_control).then(|| {
        ValidationIssue::new(
            loc,
            "string has characters that are not printable",
            "value_error.str.printable",
        )
    })
}

/// Reads typed fields out of a body, collecting every problem, as FastAPI reports them all at once.
pub struct FieldReader<'a> {
    fields: &'a Map<String, Value>,
    issues: Vec<ValidationIssue>,
}

impl<'a> FieldReader<'a> {
    pub fn new<E>(body: &'a BodyFields<E>) -> Self {
        Self::over(&body.fields)
    }

    fn over(fields: &'a Map<String, Value>) -> Self {
        Self {
            fields,
            issues: Vec::new(),
        }
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.fields.get(name).filter(|value| !value.is_null())
    }

    pub fn required_string(&mut self, name: &str) -> String {
        match self.present(name) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(_) => {
                self.issues.push(ValidationIssue::new(
                    &["body", name],
                    "str type expected",
                    "type_error.str",
                ));
                String::new()
            }
            None => {
                self.issues.push(ValidationIssue::missing(&["body", name]));
                String::new()
            }
        }
    }

    /// An optional `process` label (see [`label_issue`]).
    pub fn optional_label(&mut self, name: &str) -> Option<String> {
        let label = match self.present(name)? {
            Value::String(text) => text.clone(),
            _ => {
                self.issues.push(ValidationIssue::new(
                    &["body", name],
                    "str type expected",
                    "type_error.str",
                ));
                return None;
            }
        };
        match label_issue(&["body", name], &label) {
            Some(issue) => {
                self.issues.push(issue);
                None
            }
            None => Some(label),
        }
    }

    /// A required integer >= 0.
    pub fn required_count(&mut self, name: &str) -> u64 {
        if self.present(name).is_none() {
            self.issues.push(ValidationIssue::missing(&["body", name]));
            return 0;
        }
        self.optional_count(name).unwrap_or_default()
    }

    /// An optional integer >= 0; numeric text is accepted, as pydantic did.
    pub fn optional_count(&mut self, name: &str) -> Option<u64> {
        let value = self.present(name)?;
        // pydantic accepted an integral float (5.0) for an int field; so does this.
        let parsed = match value {
            Value::Number(number) => number.as_i64().or_else(|| {
                number
                    .as_f64()
                    .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15)
                    .map(|float| float as i64)
            }),
            Value::String(text) => text.trim().parse::<i64>().ok(),
            _ => None,
        };
        match parsed {
            Some(count) if count >= 0 => Some(count as u64),
            Some(_) => {
                self.issues.push(ValidationIssue::new(
                    &["body", name],
                    "ensure this value is greater than or equal to 0",
                    "value_error.number.not_ge",
                ));
                None
            }
            None => {
                self.issues.push(ValidationIssue::new(
                    &["body", name],
                    "value is not a valid integer",
                    "type_error.integer",
                ));
                None
            }
        }
    }

    /// An optional finite float; numeric text is accepted.
    pub fn optional_float(&mut self, name: &str) -> Option<f64> {
        let value = self.present(name)?;
        let parsed = match value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed.filter(|number| number.is_finite()) {
            Some(number) => Some(number),
            None => {
                self.issues.push(ValidationIssue::new(
                    &["body", name],
                    "value is not a valid float",
                    "type_error.float",
                ));
                None
            }
        }
    }

    /// An optional finite float >= 0 (a counter such as CPU seconds); numeric text is accepted.
    pub fn optional_non_negative_float(&mut self, name: &str) -> Option<f64> {
        let number = self.optional_float(name)?;
        if number < 0.0 {
            self.issues.push(ValidationIssue::new(
                &["body", name],
                "ensure this value is greater than or equal to 0",
                "value_error.number.not_ge",
            ));
            return None;
        }
        Some(number)
    }

    /// An optional finite float from `min` to `max` (a bounded wait in seconds); numeric text is
    /// accepted.
    pub fn optional_float_within(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
        let number = self.optional_float(name)?;
        let (relation, bound, kind) = if number < min {
            ("greater", min, "value_error.number.not_ge")
        } else if number > max {
            ("less", max, "value_error.number.not_le")
        } else {
            return Some(number);
        };
        self.issues.push(ValidationIssue::new(
            &["body", name],
            &format!("ensure this value is {relation} than or equal to {bound}"),
            kind,
        ));
        None
    }

    /// An optional boolean; form text `true`/`false` (and pydantic's other spellings) is accepted.
    pub fn optional_bool(&mut self, name: &str) -> Option<bool> {
        let value = self.present(name)?;
        let parsed = match value {
            Value::Bool(flag) => Some(*flag),
            Value::Number(number) => match number.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
                "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.issues.push(ValidationIssue::new(
                &["body", name],
                "value could not be parsed to a boolean",
                "type_error.bool",
            ));
        }
        parsed
    }

    /// Any JSON value. A form can only send text, which is kept as text, as the original did.
    pub fn optional_json(&mut self, name: &str) -> Option<Value> {
        self.present(name).cloned()
    }

    /// Discord resume data: an object `{session_id, sequence, resume_gateway_url}`, or that object
    /// as JSON text (a form can only send text). Returned with exactly those three fields.
    pub fn optional_resume(&mut self, name: &str) -> Option<Value> {
        let value = self.present(name)?;
        let parsed = match value {
            Value::String(text) => serde_json::from_str::<Value>(text).ok(),
            other => Some(other.clone()),
        };
        let Some(Value::Object(object)) = parsed else {
            self.issues.push(ValidationIssue::new(
                &["body", name],
                "value is not a valid dict",
                "type_error.dict",
            ));
            return None;
        };
        let before = self.issues.len();
        let text = |field: &str, issues: &mut Vec<ValidationIssue>| match object.get(field) {
            Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
            Some(_) => {
                issues.push(ValidationIssue::new(
                    &["body", name, field],
                    "str type expected",
                    "type_error.str",
                ));
                None
            }
            None => {
                issues.push(ValidationIssue::missing(&["body", name, field]));
                None
            }
        };
        let session_id = text("session_id", &mut self.issues);
        let resume_gateway_url = text("resume_gateway_url", &mut self.issues);
        let sequence = match object.get("sequence") {
            Some(Value::Number(number)) if number.as_u64().is_some() => number.as_u64(),
            Some(_) => {
                self.issues.push(ValidationIssue::new(
                    &["body", name, "sequence"],
                    "value is not a valid integer",
                    "type_error.integer",
                ));
                None
            }
            None => {
                self.issues
                    .push(ValidationIssue::missing(&["body", name, "sequence"]));
                None
            }
        };
        if self.issues.len() > before {
            return None;
        }
        Some(json!({
            "session_id": session_id,
            "sequence": sequence,
            "resume_gateway_url": resume_gateway_url,
        }))
    }

    /// Per-shard reports of a shard group: a list of objects `{shard_id, guild_count, latency,
    /// resume, events}` (or that list as JSON text, from a form); each field checked as its flat
    /// counterpart, with `loc` naming the entry (`["body", "shards", 2, "latency"]`).
    pub fn optional_shard_reports(&mut self, name: &str) -> Vec<ShardReport> {
        let Some(value) = self.present(name) else {
            return Vec::new();
        };
        let parsed = match value {
            Value::String(text) => serde_json::from_str::<Value>(text).ok(),
            other => Some(other.clone()),
        };
        let Some(Value::Array(entries)) = parsed else {
            self.issues.push(ValidationIssue::new(
                &["body", name],
                "value is not a valid list",
                "type_error.list",
            ));
            return Vec::new();
        };
        let mut reports = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let Value::Object(fields) = entry else {
                self.issues.push(ValidationIssue {
                    loc: vec![json!("body"), json!(name), json!(index)],
                    msg: "value is not a valid dict".into(),
                    kind: "type_error.dict".into(),
                });
                continue;
            };
            let mut entry = FieldReader::over(&fields);
            let shard_id = entry.required_count("shard_id");
            let report = ShardReport {
                shard_id: u32::try_from(shard_id).unwrap_or(u32::MAX),
                guild_count: entry.optional_count("guild_count"),
                latency: entry.optional_float("latency"),
                resume: entry
                    .optional_resume("resume")
                    .map(|value| value.to_string()),
                events: entry.optional_count("events"),
            };
            if entry.issues.is_empty() {
                reports.push(report);
            }
            // `["body", field, ...]` of the entry becomes `["body", name, index, field, ...]`.
            self.issues
                .extend(entry.issues.into_iter().map(|mut issue| {
                    issue.loc.splice(1..1, [json!(name), json!(index)]);
                    issue
                }));
        }
        reports
    }

    pub fn finish(self) -> Result<(), ValidationFailed> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ValidationFailed {
                issues: self.issues,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_over(fields: &Map<String, Value>) -> FieldReader<'_> {
        FieldReader::over(fields)
    }

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            other => panic!("not an object: {other}"),
        }
    }

    fn kinds(reader: FieldReader<'_>) -> Vec<(Vec<Value>, String)> {
        reader
            .issues
            .into_iter()
            .map(|issue| (issue.loc, issue.kind))
            .collect()
    }

    #[test]
    fn cpu_seconds_take_any_finite_number_from_zero_up_and_numeric_text() {
        let body = fields(json!({"a": 0, "b": 412.75, "c": " 1e2 "}));
        let mut reader = reader_over(&body);
        assert_eq!(reader.optional_non_negative_float("a"), Some(0.0));
        assert_eq!(reader.optional_non_negative_float("b"), Some(412.75));
        assert_eq!(reader.optional_non_negative_float("c"), Some(100.0));
        assert_eq!(reader.optional_non_negative_float("absent"), None);
        assert!(reader.finish().is_ok());
    }

    #[test]
    fn negative_or_non_numeric_cpu_seconds_are_named_issues() {
        let body = fields(json!({"negative": -0.1, "text": "busy", "infinite": "inf"}));
        let mut reader = reader_over(&body);
        for name in ["negative", "text", "infinite"] {
            assert_eq!(reader.optional_non_negative_float(name), None, "{name}");
        }
        assert_eq!(
            kinds(reader),
            [
                (
                    vec![json!("body"), json!("negative")],
                    "value_error.number.not_ge"
                ),
                (vec![json!("body"), json!("text")], "type_error.float"),
                (vec![json!("body"), json!("infinite")], "type_error.float"),
            ]
            .map(|(loc, kind)| (loc, kind.to_owned()))
        );
    }

    #[test]
    fn a_bounded_float_takes_its_bounds_and_names_the_bound_it_crosses() {
        let body = fields(json!({"low": 0, "high": "30", "under": -1, "over": 31, "text": "x"}));
        let mut reader = reader_over(&body);
        assert_eq!(reader.optional_float_within("low", 0.0, 30.0), Some(0.0));
        assert_eq!(reader.optional_float_within("high", 0.0, 30.0), Some(30.0));
        assert_eq!(reader.optional_float_within("absent", 0.0, 30.0), None);
        for name in ["under", "over", "text"] {
            assert_eq!(
                reader.optional_float_within(name, 0.0, 30.0),
                None,
                "{name}"
            );
        }
        let messages: Vec<_> = reader
            .issues
            .iter()
            .map(|issue| issue.msg.clone())
            .collect();
        assert_eq!(
            messages[..2],
            [
                "ensure this value is greater than or equal to 0",
                "ensure this value is less than or equal to 30"
            ]
        );
        assert_eq!(
            kinds(reader),
            [
                (
                    vec![json!("body"), json!("under")],
                    "value_error.number.not_ge"
                ),
                (
                    vec![json!("body"), json!("over")],
                    "value_error.number.not_le"
                ),
                (vec![json!("body"), json!("text")], "type_error.float"),
            ]
            .map(|(loc, kind)| (loc, kind.to_owned()))
        );
    }

    #[test]
    fn each_shard_report_carries_its_own_events_and_a_bad_count_names_its_entry() {
        let body = fields(json!({"shards": [
            {"shard_id": 4, "events": 1200},
            {"shard_id": 5},
            {"shard_id": 6, "events": -1},
        ]}));
        let mut reader = reader_over(&body);
        let reports = reader.optional_shard_reports("shards");
        let events: Vec<_> = reports.iter().map(|r| (r.shard_id, r.events)).collect();
        assert_eq!(events, [(4, Some(1200)), (5, None)]);
        assert_eq!(
            kinds(reader),
            [(
                vec![json!("body"), json!("shards"), json!(2), json!("events")],
                "value_error.number.not_ge".to_owned()
            )]
        );
    }
}
