//! Users in MongoDB: `{_id, email, passwordHash, createdAt}` with a unique index on email.

use chrono::{DateTime, Utc};
use lib_shared::http::error::{DependencyError, is_duplicate_key, landed_before};
use mongodb::{
    Collection, Database, IndexModel,
    bson::{doc, oid::ObjectId},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

use crate::domain::Email;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub email: String,
    #[serde(rename = "passwordHash")]
    pub password_hash: String,
    #[serde(
        rename = "createdAt",
        with = "bson::serde_helpers::chrono_datetime_as_bson_datetime"
    )]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("email already registered")]
    EmailTaken,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

fn users(db: &Database) -> Collection<UserRecord> {
    db.collection("users")
}

pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    let index = IndexModel::builder()
        .keys(doc! { "email": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("email_unique".to_string())
                .build(),
        )
        .build();
    users(db).create_index(index).await?;
    Ok(())
}

pub async fn insert_user(db: &Database, user: &UserRecord) -> Result<(), InsertError> {
    match users(db).insert_one(user).await {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => match landed_before(db, "users", user.id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(InsertError::EmailTaken),
            Err(e) => Err(InsertError::Dependency(e)),
        },
        Err(e) => Err(InsertError::Dependency(e.into())),
    }
}

pub async fn find_by_email(
    db: &Database,
    email: &Email,
) -> Result<Option<UserRecord>, DependencyError> {
    Ok(users(db).find_one(doc! { "email": email.as_str() }).await?)
}
