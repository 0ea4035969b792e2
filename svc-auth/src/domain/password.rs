/// A password within the allowed length; never printed.
pub struct Password(String);

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

impl Password {
    pub fn parse(raw: String) -> Result<Self, &'static str> {
        let chars = raw.chars().count();
        if chars < MIN_CHARS {
            return Err("Password must be at least 8 characters");
        }
        if chars > MAX_CHARS {
            return Err("Password must be at most 128 characters");
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::Password;

    #[test]
    fn length_bounds_count_characters_not_bytes() {
        assert!(Password::parse("1234567".into()).is_err(), "7 chars");
        assert!(Password::parse("12345678".into()).is_ok(), "8 chars");
        assert!(
            Password::parse("é".repeat(128)).is_ok(),
            "128 two-byte chars"
        );
        assert!(Password::parse("a".repeat(129)).is_err(), "129 chars");
    }

    #[test]
    fn debug_hides_the_password() {
        let p = Password::parse("correct horse".into()).unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
