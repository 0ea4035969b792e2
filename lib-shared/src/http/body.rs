//! `JsonBody<T>`: a JSON request body whose parse errors name the field at fault.

use poem::{IntoResponse, Request, RequestBody, http::StatusCode};
use poem_openapi::{
    impl_apirequest_for_payload,
    payload::{Json, ParsePayload, Payload},
    registry::{MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use serde_json::Value;

use crate::http::error::ErrorBody;

/// Use in place of poem-openapi's `Json<T>` for request bodies.
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as poem::FromRequest>::from_request(request, body).await?;
        let value: Value = serde_json::from_slice(&data)
            .map_err(|e| reject(None, format!("Request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(reject(None, "Request body must be a JSON object".into()));
        }
        match T::parse_from_json(Some(value.clone())) {
            Ok(parsed) => Ok(Self(parsed)),
            Err(err) => Err(match field_problem::<T>(&value) {
                Some((field, message)) => reject(Some(field), message),
                None => reject(
                    None,
                    format!("Invalid request body: {}", err.into_message()),
                ),
            }),
        }
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

fn reject(field: Option<&'static str>, message: String) -> poem::Error {
    let body = match field {
        Some(f) => ErrorBody::field(f, message),
        None => ErrorBody::new(message),
    };
    poem::Error::from_response(body.with_status(StatusCode::BAD_REQUEST).into_response())
}

/// The first property of the body that is missing or of the wrong JSON type, by `T`'s schema.
fn field_problem<T: Type>(value: &Value) -> Option<(&'static str, String)> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let MetaSchemaRef::Reference(name) = T::schema_ref() else {
        return None;
    };
    let schema = registry.schemas.get(&name)?;
    for (prop, prop_schema) in &schema.properties {
        let required = schema.required.contains(prop);
        match value.get(*prop) {
            None | Some(Value::Null) if required => {
                return Some((*prop, format!("{prop} is required")));
            }
            None | Some(Value::Null) => {}
            Some(v) => {
                let expected = match prop_schema {
                    MetaSchemaRef::Inline(s) => s.ty,
                    MetaSchemaRef::Reference(_) => "object",
                };
                if !json_type_matches(expected, v) {
                    return Some((*prop, format!("{prop} must be a {expected}")));
                }
            }
        }
    }
    None
}

fn json_type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{http::error::JsonErrors, http::types::Text};
    use poem::{EndpointExt, test::TestClient};
    use poem_openapi::{Object, OpenApi, OpenApiService};

    #[derive(Object)]
    struct Listing {
        title: Text,
        price: f64,
        note: Option<Text>,
    }

    struct Api;

    #[OpenApi]
    impl Api {
        #[oai(path = "/listings", method = "post")]
        async fn create(&self, body: JsonBody<Listing>) -> Json<String> {
            let note = body.0.note.map(Text::into_inner).unwrap_or_default();
            Json(format!("{} {} {note}", body.0.title.0, body.0.price))
        }
    }

    async fn post(body: &'static str) -> (StatusCode, Value) {
        let app = OpenApiService::new(Api, "t", "1").with(JsonErrors);
        let resp = TestClient::new(app)
            .post("/listings")
            .content_type("application/json")
            .body(body)
            .send()
            .await;
        let status = resp.0.status();
        let text = resp.0.into_body().into_string().await.unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }

    #[tokio::test]
    async fn parse_errors_name_the_field_at_fault() {
        let cases = [
            (r#"{"price": 3}"#, "title", "title is required", "missing"),
            (
                r#"{"title": null, "price": 3}"#,
                "title",
                "title is required",
                "null",
            ),
            (
                r#"{"title": 5, "price": 3}"#,
                "title",
                "title must be a string",
                "number for string",
            ),
            (
                r#"{"title": "a", "price": "3"}"#,
                "price",
                "price must be a number",
                "string for number",
            ),
            (
                r#"{"title": "a", "price": 3, "note": 1}"#,
                "note",
                "note must be a string",
                "optional of wrong type",
            ),
            (
                r#"{"title": {"$ne": null}, "price": 3}"#,
                "title",
                "title must be a string",
                "operator object",
            ),
        ];
        for (body, field, message, case) in cases {
            let (status, json) = post(body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "case: {case}");
            assert_eq!(json["errors"][0]["field"], field, "case: {case}");
            assert_eq!(json["errors"][0]["message"], message, "case: {case}");
        }
    }

    #[tokio::test]
    async fn non_objects_and_broken_json_are_400_without_a_field() {
        for (body, case) in [
            ("[1]", "array"),
            ("{", "truncated"),
            ("", "empty"),
            ("7", "number"),
        ] {
            let (status, json) = post(body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "case: {case}");
            assert!(json["errors"][0].get("field").is_none(), "case: {case}");
        }
    }

    #[tokio::test]
    async fn a_valid_body_parses() {
        let (status, json) = post(r#"{"title": "Gig", "price": 12.5}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json, Value::String("Gig 12.5 ".into()));
    }
}
