//! RFC 7662 token introspection: the request and the judgement of the AS's answer.

use serde_json::{Map, Value};

use crate::client_auth::{ClientAuthenticator, EncodedRequest};
use crate::error::{AsError, sanitize};
use crate::http::{HttpResponse, Transport};
use crate::strict_json::{self, Refusal};

/// Asks the AS about a token; returns the answer's JSON object.
pub(crate) fn introspect(
    transport: &dyn Transport,
    client: &ClientAuthenticator,
    endpoint: &str,
    token: &str,
) -> Result<Map<String, Value>, AsError> {
    let request = client.encode(&[("token", token), ("token_type_hint", "access_token")])?;
    let EncodedRequest {
        authorization,
        body,
        assertion,
    } = request;
    let response = transport.post_form(endpoint, authorization, body)?;
    let mut secrets = client.secrets(assertion.as_ref());
    secrets.push(token);
    json_object(&response, &secrets)
}

/// The JSON object of a 200 answer, or the typed error for anything else. Shared by
/// introspection and the token endpoint. AS text kept in the error is sanitized, with every
/// one of `secrets` (what the request carried) scrubbed from it.
pub(crate) fn json_object(
    response: &HttpResponse,
    secrets: &[&str],
) -> Result<Map<String, Value>, AsError> {
    let parsed = strict_json::from_slice(&response.body);
    if response.status != 200 {
        let field = |name: &str| {
            parsed
                .as_ref()
                .ok()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(|text| sanitize(text, secrets))
        };
        let (error, description) = (field("error"), field("error_description"));
        let status = response.status;
        if status == 401 || (status == 400 && error.as_deref() == Some("invalid_client")) {
            return Err(AsError::CredentialsRejected {
                status,
                error,
                description,
            });
        }
        return Err(AsError::Status {
            status,
            error,
            description,
        });
    }
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AsError::Malformed(
            "the answer is JSON but not an object".into(),
        )),
        Err(Refusal::DuplicateName) => Err(AsError::Malformed(
            "the answer repeats a member name in an object".into(),
        )),
        Err(Refusal::NotJson) => Err(AsError::Malformed("the answer is not JSON".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_are_classified() {
        assert!(json_object(&resp(200, r#"{"active":true}"#), &[]).is_ok());
        assert!(matches!(
            json_object(&resp(200, "[1]"), &[]),
            Err(AsError::Malformed(_))
        ));
        assert!(matches!(
            json_object(&resp(200, "<html>"), &[]),
            Err(AsError::Malformed(_))
        ));
        assert!(matches!(
            json_object(&resp(400, r#"{"error":"invalid_client","error_description":"bad\nsecret"}"#), &[]),
            Err(AsError::CredentialsRejected { status: 400, error: Some(ref e), description: Some(ref d) }) if e == "invalid_client" && d == "badsecret"
        ));
        assert!(matches!(
            json_object(&resp(401, ""), &[]),
            Err(AsError::CredentialsRejected { .. })
        ));
        assert!(matches!(
            json_object(&resp(500, "oops"), &[]),
            Err(AsError::Status { status: 500, .. })
        ));
        assert!(matches!(
            json_object(&resp(302, ""), &[]),
            Err(AsError::Status { status: 302, .. })
        ));
    }
}
