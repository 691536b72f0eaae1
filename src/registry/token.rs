//! Bearer and basic tokens: the Authorization header of a request for a scope,
//! fetching a token from the registry's token service (with a password, a job
//! token or an identity token) and refreshing it when it expires or a request
//! needs a wider scope.
//!
//! It owns the token exchange. Parsing challenges and JWT expiry is `auth`'s;
//! finding the credentials is `creds`'.

use super::*;

impl Client {
    /// The Authorization header for a request needing `scope`, fetching or
    /// refreshing the registry's token when needed.
    pub(super) async fn authorization(&self, r: &Reference, scope: &str) -> Result<Option<String>> {
        let mut auth = self.auth.lock().await;
        let Some(state) = auth.get(&r.registry).cloned() else {
            return Ok(None);
        };
        match state {
            AuthState::Basic => Ok(match self.credentials(&r.registry).secret {
                Some(creds::Secret::Basic { username, password }) => Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                )),
                _ => None,
            }),
            AuthState::Bearer {
                realm,
                service,
                token,
            } => {
                if let Some(t) = token.as_ref().filter(|t| t.usable_for(scope)) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let mut wanted: BTreeSet<String> = self
                    .scopes
                    .lock()
                    .map(|s| s.get(&r.registry).cloned().unwrap_or_default())
                    .unwrap_or_default();
                wanted.insert(scope.to_string());
                if let Some(t) = &token {
                    wanted.extend(t.scopes.iter().cloned());
                }
                let t = self
                    .fetch_token(r, &realm, service.as_deref(), &wanted)
                    .await?;
                let header = format!("Bearer {}", t.value);
                auth.insert(
                    r.registry.clone(),
                    AuthState::Bearer {
                        realm,
                        service,
                        token: Some(t),
                    },
                );
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scopes: &BTreeSet<String>,
    ) -> Result<Token> {
        let found = self.credentials(&r.registry);
        let mut url = Url::parse(realm).map_err(|e| {
            RegistryError::Other(format!(
                "registry {} sent a bad token realm {realm:?}: {e}",
                r.registry
            ))
        })?;
        let http = self.http(&url_host(&url))?;
        let req = match &found.secret {
            Some(creds::Secret::IdentityToken(refresh)) => {
                let mut form: Vec<(&str, String)> = vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "kiln".into()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.into()));
                }
                form.push((
                    "scope",
                    scopes.iter().cloned().collect::<Vec<_>>().join(" "),
                ));
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", url_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                http.post(url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for sc in scopes {
                        q.append_pair("scope", sc);
                    }
                }
                let req = http.get(url);
                match other {
                    Some(creds::Secret::Basic { username, password }) => {
                        req.basic_auth(username, Some(password))
                    }
                    _ => req,
                }
            }
        };
        let resp = req.send().await.map_err(|e| RegistryError::Unreachable {
            registry: r.registry.clone(),
            hint: format!(
                "the token service {realm} could not be reached; {}",
                self.connect_hint(&r.registry, &e)
            ),
            cause: cause_chain(&e),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Denied {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                status: status.as_u16(),
                detail: format!(": the token service {realm} rejected the credentials"),
                source_name: found.source.clone(),
                hint: format!("check the credentials from {} (a CI job token is valid only while its job runs)", found.source),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Other(format!(
                "registry {}: token service {realm} answered {status}",
                r.registry
            )));
        }
        let body = resp.bytes().await.map_err(|e| {
            RegistryError::Other(format!("registry {}: token service: {e}", r.registry))
        })?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Other(format!(
                "registry {}: token service sent an invalid answer: {e}",
                r.registry
            ))
        })?;
        let value = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                RegistryError::Other(format!(
                    "registry {}: token service answered without a token",
                    r.registry
                ))
            })?;
        let secs = v
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .or_else(|| auth::jwt_seconds_left(&value))
            .unwrap_or(60);
        let lifetime = Duration::from_secs(secs);
        tracing::debug!(
            "token for {} valid {}s, scopes {:?}",
            r.registry,
            secs,
            scopes
        );
        Ok(Token {
            value,
            expires_at: Instant::now() + lifetime,
            lifetime,
            scopes: scopes.clone(),
        })
    }
}
