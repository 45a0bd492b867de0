//! Node side of the session (upstream `RegistryClient`'s key handling).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::X509Ref;

use super::methods::Rpc;
use super::query::request_target;
use super::{decode_header, RpcError, SessionKey};
use crate::crypto::{self, hmac_sha1, mac_eq, sha1};

/// The key of our session with the registry, if any.
#[derive(Debug, Default, Clone)]
pub struct ClientSession {
    key: Option<SessionKey>,
}

/// A signed request: the header to send and the key of the answer's HMAC.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// Value of the `Re6stHMAC` request header.
    pub header: String,
    pub response_key: SessionKey,
}

/// The target of our `hello`: `client_prefix` is our prefix as a bit
/// string, `protocol` the protocol we speak.
pub fn hello_target(client_prefix: &str, protocol: u32) -> Result<String, RpcError> {
    Ok(request_target(
        Rpc::Hello,
        &[
            ("client_prefix", client_prefix),
            ("protocol", &protocol.to_string()),
        ],
    )?)
}

impl ClientSession {
    /// Whether the next session call must be preceded by `hello`.
    pub fn needs_hello(&self) -> bool {
        self.key.is_none()
    }

    /// Takes the secret out of a `hello` answer: the first half is the
    /// secret encrypted for us, the second the CA's signature of the first.
    /// On any failure the session stays closed.
    pub fn accept_hello(
        &mut self,
        answer: &[u8],
        ca: &X509Ref,
        our_key: &PKeyRef<Private>,
    ) -> Result<(), RpcError> {
        self.key = None;
        if answer.is_empty() || !answer.len().is_multiple_of(2) {
            return Err(RpcError::BadHello);
        }
        let (encrypted, signature) = answer.split_at(answer.len() / 2);
        crypto::verify(ca, signature, encrypted).map_err(|_| RpcError::HelloNotSigned)?;
        let secret = crypto::decrypt(our_key, encrypted).map_err(|_| RpcError::BadHello)?;
        let key: SessionKey = secret
            .as_slice()
            .try_into()
            .map_err(|_| RpcError::BadSecret(secret.len()))?;
        self.key = Some(key);
        Ok(())
    }

    /// Signs a request target (`/method?query`, as built by
    /// [`request_target`](super::request_target), without the registry
    /// URL's path) with the current key, then ratchets: the answer is
    /// checked with `sha1(key)`, the next request signed with
    /// `sha1(sha1(key))`.
    pub fn sign(&mut self, target: &str) -> Result<SignedRequest, RpcError> {
        let key = self.key.ok_or(RpcError::NoSession)?;
        let mac = hmac_sha1(&key, target.as_bytes())?;
        let response_key = sha1(&key)?;
        self.key = Some(sha1(&response_key)?);
        Ok(SignedRequest {
            header: B64.encode(mac),
            response_key,
        })
    }

    /// Checks the `Re6stHMAC` header of an answer (`body` empty for 204).
    /// On failure the session is dropped, so the next call says `hello`.
    pub fn verify_response(
        &mut self,
        request: &SignedRequest,
        body: &[u8],
        header: Option<&[u8]>,
    ) -> Result<(), RpcError> {
        let result = header
            .ok_or(RpcError::BadHeader)
            .and_then(decode_header)
            .and_then(|mac| {
                if mac_eq(&hmac_sha1(&request.response_key, body)?, &mac) {
                    Ok(())
                } else {
                    Err(RpcError::WrongHmac)
                }
            });
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Forgets the session (after any failed call, as upstream does).
    pub fn reset(&mut self) {
        self.key = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::server::{hello_response, Sessions};
    use super::super::{query::parse_target, response_header};
    use super::*;

    const CN: &str = "0000000000000001";

    #[test]
    fn client_and_server_agree() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 1);
        let mut server = Sessions::default();
        let hello = parse_target(&hello_target(CN, 10).unwrap()).unwrap();
        assert_eq!(hello.arg("client_prefix"), Some(CN));
        assert_eq!(hello.arg("protocol"), Some("10"));
        let answer = server
            .answer_hello(CN, 10, &node.cert, &pki.ca_key, &[42; 20])
            .unwrap();

        let mut client = ClientSession::default();
        assert!(client.needs_hello());
        client.accept_hello(&answer, &pki.ca, &node.key).unwrap();
        assert!(!client.needs_hello());
        for rpc in [Rpc::GetNetworkConfig, Rpc::GetDh, Rpc::RenewCertificate] {
            let target = request_target(rpc, &[("cn", CN)]).unwrap();
            let req = client.sign(&target).unwrap();
            let bound = parse_target(&target).unwrap();
            let auth = server
                .authenticate_header(
                    bound.session().unwrap(),
                    target.as_bytes(),
                    Some(req.header.as_bytes()),
                )
                .unwrap();
            assert_eq!(auth.protocol, 10);
            let header = auth.response_header(b"body").unwrap();
            client
                .verify_response(&req, b"body", Some(header.as_bytes()))
                .unwrap();
        }
    }

    #[test]
    fn tampered_answers_reset_the_session() {
        let key = [9u8; 20];
        let good = |body: &[u8]| response_header(&sha1(&key).unwrap(), body).unwrap();
        for (body, header) in [
            (&b"body"[..], Some(good(b"other"))),
            (b"body", Some(response_header(&key, b"body").unwrap())),
            (b"body", Some("AAAA".to_owned())),
            (b"body", Some("not base64!".to_owned())),
            (b"body", None),
        ] {
            let mut client = ClientSession { key: Some(key) };
            let req = client.sign("/getCa").unwrap();
            let r = client.verify_response(&req, body, header.as_deref().map(str::as_bytes));
            assert!(r.is_err());
            assert!(client.needs_hello());
        }
        let mut client = ClientSession { key: Some(key) };
        let req = client.sign("/getCa").unwrap();
        client
            .verify_response(&req, b"body", Some(good(b"body").as_bytes()))
            .unwrap();
        assert!(matches!(
            ClientSession::default().sign("/getCa"),
            Err(RpcError::NoSession)
        ));
    }

    #[test]
    fn ratchet_matches_upstream_description() {
        let k0 = [5u8; 20];
        let mut client = ClientSession { key: Some(k0) };
        let r1 = client.sign("/a").unwrap();
        assert_eq!(
            decode_header(r1.header.as_bytes()).unwrap(),
            hmac_sha1(&k0, b"/a").unwrap()
        );
        let k1 = sha1(&k0).unwrap();
        assert_eq!(r1.response_key, k1);
        let k2 = sha1(&k1).unwrap();
        let r2 = client.sign("/b").unwrap();
        assert_eq!(
            decode_header(r2.header.as_bytes()).unwrap(),
            hmac_sha1(&k2, b"/b").unwrap()
        );
    }

    #[test]
    fn hello_signed_by_another_ca_is_refused() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let other = re6st_testkit::Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 1);
        let mut client = ClientSession::default();
        let forged = hello_response(&node.cert, &other.ca_key, &[1; 20]).unwrap();
        assert!(matches!(
            client.accept_hello(&forged, &pki.ca, &node.key),
            Err(RpcError::HelloNotSigned)
        ));
        // Signed by the CA but for another node: we cannot decrypt it.
        let stranger = pki.node("2/16", 2);
        let theirs = hello_response(&stranger.cert, &pki.ca_key, &[1; 20]).unwrap();
        assert!(matches!(
            client.accept_hello(&theirs, &pki.ca, &node.key),
            Err(RpcError::BadHello)
        ));
        // A well-formed answer whose secret has the wrong length.
        let mut short = crypto::encrypt_for(&node.cert, &[1; 16]).unwrap();
        let sig = crypto::sign(&pki.ca_key, &short).unwrap();
        short.extend_from_slice(&sig);
        assert!(matches!(
            client.accept_hello(&short, &pki.ca, &node.key),
            Err(RpcError::BadSecret(16))
        ));
        for bad in [&b""[..], b"abc", &[0u8; 512]] {
            assert!(client.accept_hello(bad, &pki.ca, &node.key).is_err());
        }
        assert!(client.needs_hello());
        // A good answer after failures opens the session; a bad one closes it.
        let good = hello_response(&node.cert, &pki.ca_key, &[1; 20]).unwrap();
        client.accept_hello(&good, &pki.ca, &node.key).unwrap();
        assert!(client.accept_hello(&forged, &pki.ca, &node.key).is_err());
        assert!(client.needs_hello());
    }
}
