/// A ticket title: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTitle(String);

impl TicketTitle {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let title = raw.trim();
        if title.is_empty() {
            return Err("Title is required");
        }
        if title.chars().count() > 200 {
            return Err("Title must be at most 200 characters");
        }
        if title.chars().any(char::is_control) {
            return Err("Title must not contain control characters");
        }
        Ok(Self(title.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::TicketTitle;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(TicketTitle::parse("  Gig  ").unwrap().into_inner(), "Gig");
        assert!(TicketTitle::parse("   ").is_err(), "blank");
        assert!(
            TicketTitle::parse(&"é".repeat(200)).is_ok(),
            "200 characters"
        );
        assert!(
            TicketTitle::parse(&"a".repeat(201)).is_err(),
            "201 characters"
        );
        assert!(TicketTitle::parse("a\u{0}b").is_err(), "control character");
    }
}
