//! Request field types stricter than poem-openapi's defaults.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// A JSON string and nothing else: poem-openapi's `String` also accepts numbers and
/// booleans, and a wrong-typed field must be a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Text {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(s)) => Ok(Self(s)),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_strings_parse() {
        assert_eq!(
            Text::parse_from_json(Some(json!("a"))).unwrap(),
            Text("a".into())
        );
        for (value, case) in [
            (json!(1), "number"),
            (json!(true), "bool"),
            (json!(null), "null"),
            (json!({"$ne": null}), "object"),
            (json!(["a"]), "array"),
        ] {
            assert!(
                Text::parse_from_json(Some(value)).is_err(),
                "accepted {case}"
            );
        }
        assert!(Text::parse_from_json(None).is_err(), "accepted missing");
    }
}
