//! The public key other services verify tokens with.

use std::sync::Arc;

use poem_openapi::{Object, OpenApi, Tags, payload::Json};

use crate::tokens::PublicJwk;

#[derive(Tags)]
enum KeyTags {
    /// Keys for verifying tokens.
    Keys,
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Object)]
pub struct JwkSet {
    /// The keys tokens may be signed with.
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Object)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// Key id (RFC 7638 thumbprint), also in each token's header.
    pub kid: String,
    /// Algorithm: `EdDSA`.
    pub alg: String,
    /// Use: `sig`.
    #[oai(rename = "use")]
    pub use_: String,
}

pub struct KeysApi {
    pub jwk: Arc<PublicJwk>,
}

#[OpenApi(prefix_path = "/api/auth", tag = "KeyTags::Keys")]
impl KeysApi {
    /// The public keys that verify tokens issued by this service.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self) -> Json<JwkSet> {
        Json(JwkSet {
            keys: vec![Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: self.jwk.x.clone(),
                kid: self.jwk.kid.clone(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
            }],
        })
    }
}
