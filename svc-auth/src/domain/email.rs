/// An email address, trimmed and lower-cased, so one mailbox is one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("Email is required");
        }
        if email.len() > 254 {
            return Err("Email must be at most 254 characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("Email must be a valid email address");
        };
        let valid = !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && !email.contains(['<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']']);
        if !valid {
            return Err("Email must be a valid email address");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn valid_addresses_are_normalised() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn invalid_addresses_are_refused() {
        let cases = [
            ("", "empty"),
            ("   ", "blank"),
            ("ada", "no at sign"),
            ("@example.com", "no local part"),
            ("ada@", "no domain"),
            ("ada@example", "domain without a dot"),
            ("ada@@example.com", "two at signs"),
            ("ada lovelace@example.com", "inner space"),
            ("ada@example..com", "empty label"),
            ("ada@.example.com", "leading dot"),
            ("<ada>@example.com", "angle brackets"),
        ];
        for (raw, case) in cases {
            assert!(Email::parse(raw).is_err(), "accepted {case}: {raw:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(
            Email::parse(&long).is_err(),
            "accepted an over-long address"
        );
    }
}
