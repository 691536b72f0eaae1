//! Registry authentication: parse `WWW-Authenticate` challenges and obtain bearer
//! tokens (Docker registry token spec). Issue-2 scope: anonymous tokens; the
//! credential sources (CI variables, config.json) plug in here.

use std::collections::BTreeMap;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic`, lower-case.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parse `Bearer realm="…",service="…",scope="a,b"`: quoted values may hold commas.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    let mut params = BTreeMap::new();
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        i += 1; // '='
        let mut value = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && chars[i] != ',' {
                value.push(chars[i]);
                i += 1;
            }
        }
        if !key.is_empty() {
            params.insert(key, value.trim().to_string());
        }
    }
    if scheme.is_empty() {
        return None;
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_commas_in_scope() {
        let c = parse_challenge(r#"Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",scope="repository:g/p:pull,push",error="insufficient_scope""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://gitlab.example.com/jwt/auth");
        assert_eq!(c.params["scope"], "repository:g/p:pull,push");
        assert_eq!(c.params["error"], "insufficient_scope");
        let b = parse_challenge("Basic realm=\"Registry Realm\"").unwrap();
        assert_eq!(b.scheme, "basic");
    }
}

/// Seconds until a JWT's `exp`, read without verifying the token (kiln only needs
/// to know when to refresh; the registry verifies it).
pub fn jwt_seconds_left(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(exp.saturating_sub(now))
}

#[cfg(test)]
mod jwt_tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn expiry_from_jwt() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let tok = format!(
            "{}.{}.sig",
            enc(serde_json::json!({"alg": "RS256"})),
            enc(serde_json::json!({"exp": now + 300}))
        );
        let left = jwt_seconds_left(&tok).unwrap();
        assert!((298..=300).contains(&left), "{left}");
        assert_eq!(jwt_seconds_left("opaque-token"), None);
    }
}
