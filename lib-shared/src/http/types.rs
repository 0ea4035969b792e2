//! Request field types stricter than poem-openapi's defaults.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// A string whose schema declares the rules the domain checks, so generated clients,
/// form builders and fuzzers know them; the domain still checks them itself (with its own
/// messages), so anything that is a string parses here.
macro_rules! documented_text {
    ($($(#[$doc:meta])* $name:ident: $schema:expr;)+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                concat!("string_", stringify!($name)).into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let declare: fn(&mut MetaSchema) = $schema;
                let mut schema = MetaSchema::new("string");
                declare(&mut schema);
                MetaSchemaRef::Inline(Box::new(schema))
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

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value {
                    Some(Value::String(s)) => Ok(Self(s)),
                    Some(other) => Err(ParseError::expected_type(other)),
                    None => Err(ParseError::expected_input()),
                }
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Ok(Self(value.to_string()))
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    )+};
}

/// A MongoDB ObjectId in hex, as every id here is.
pub const ID_PATTERN: &str = "^[0-9a-f]{24}$";

documented_text! {
    /// A JSON string and nothing else: poem-openapi's `String` also accepts numbers and
    /// booleans, and a wrong-typed field must be a 400.
    Text: |_| {};
    /// An id: 24 hexadecimal characters.
    Id: |s| s.pattern = Some(ID_PATTERN.into());
    /// A ticket's title: 1 to 200 characters once trimmed, no control characters.
    Title: |s| {
        s.min_length = Some(1);
        s.max_length = Some(200);
    };
    /// An email address, at most 254 characters.
    EmailText: |s| {
        s.format = Some("email");
        s.max_length = Some(254);
    };
    /// A password: 8 to 128 characters.
    PasswordText: |s| {
        s.min_length = Some(8);
        s.max_length = Some(128);
    };
}

/// Dollars in a request: more than 0, at most 1,000,000, in whole cents. The schema says
/// so; `Price::parse_dollars` checks it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dollars(pub f64);

impl Type for Dollars {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "number_dollars".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new_with_format("number", "double");
        schema.minimum = Some(0.0);
        schema.exclusive_minimum = Some(true);
        schema.maximum = Some(1_000_000.0);
        schema.multiple_of = Some(0.01);
        MetaSchemaRef::Inline(Box::new(schema))
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

impl ParseFromJSON for Dollars {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::Number(n)) => n
                .as_f64()
                .map(Self)
                .ok_or_else(|| ParseError::custom("not a number")),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl ToJSON for Dollars {
    fn to_json(&self) -> Option<Value> {
        serde_json::Number::from_f64(self.0).map(Value::Number)
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
