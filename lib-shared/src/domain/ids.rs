//! Resource ids are MongoDB ObjectIds, 24 hex characters on the wire.

use mongodb::bson::oid::ObjectId;

/// Parses an id from a path, query or body; `None` for anything malformed.
pub fn parse_id(raw: &str) -> Option<ObjectId> {
    let raw = raw.trim();
    (raw.len() == 24)
        .then(|| ObjectId::parse_str(raw).ok())
        .flatten()
}

/// Splits rows read `limit + 1` at a time, newest first, into the page and the cursor of
/// the next page (the last id shown), which exists only when the extra row came back.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> ObjectId,
) -> (Vec<T>, Option<String>) {
    if rows.len() <= limit as usize {
        return (rows, None);
    }
    rows.truncate(limit as usize);
    let cursor = rows.last().map(|r| id(r).to_hex());
    (rows, cursor)
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn only_24_hex_characters_parse() {
        assert!(parse_id("6b04f5367fc5679fc2ef91e9").is_some());
        for raw in [
            "",
            "123",
            "zzzzzzzzzzzzzzzzzzzzzzzz",
            "6b04f5367fc5679fc2ef91e9a",
            "{\"$ne\":null}",
        ] {
            assert!(parse_id(raw).is_none(), "{raw}");
        }
    }
}
