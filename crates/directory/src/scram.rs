//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 7677, RFC 5802), with channel
//! binding to the TLS connection (tls-exporter, RFC 9266; tls-server-end-point,
//! RFC 5929 §4). The server keeps only StoredKey and ServerKey, derived when a
//! password is set, so it never needs the clear password to check a login.
//!
//! Passwords are used as their UTF-8 bytes; SASLprep (RFC 4013) is not applied,
//! which only matters for passwords with unusual Unicode spaces or compositions.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use casella_store::ScramSecret;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// PBKDF2 iterations for new secrets (RFC 7677 §4 asks for at least 4096).
pub const ITERATIONS: u32 = 4096;

/// The channel-binding data of a TLS connection.
#[derive(Debug, Clone, Default)]
pub struct ChannelBindings {
    /// RFC 9266: 32 bytes exported with the label "EXPORTER-Channel-Binding".
    pub tls_exporter: Option<Vec<u8>>,
    /// The server's certificate (DER), whose hash is the RFC 5929 §4.1
    /// tls-server-end-point binding — computed only when a client asks for it.
    pub server_certificate: Option<std::sync::Arc<[u8]>>,
}

impl ChannelBindings {
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.server_certificate.is_some()
    }

    /// Whether `name` is a binding this connection has.
    pub fn get_name(&self, name: &str) -> bool {
        match name {
            "tls-exporter" => self.tls_exporter.is_some(),
            "tls-server-end-point" => self.server_certificate.is_some(),
            _ => false,
        }
    }

    fn get(&self, name: &str) -> Option<Vec<u8>> {
        match name {
            "tls-exporter" => self.tls_exporter.clone(),
            "tls-server-end-point" => self.server_certificate.as_deref().map(server_end_point),
            _ => None,
        }
    }
}

/// RFC 5929 §4.1: SHA-256 of the certificate, or the certificate's own hash when
/// it is signed with SHA-384 or SHA-512.
pub fn server_end_point(cert_der: &[u8]) -> Vec<u8> {
    // OIDs (DER bodies) of sha384/sha512 with RSA and ECDSA signatures.
    const SHA384: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let has = |oids: &[&[u8]]| {
        oids.iter()
            .any(|o| cert_der.windows(o.len()).any(|w| w == *o))
    };
    let alg = if has(SHA512) {
        &digest::SHA512
    } else if has(SHA384) {
        &digest::SHA384
    } else {
        &digest::SHA256
    };
    digest::digest(alg, cert_der).as_ref().to_vec()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn salted(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, &mut out);
    out
}

/// The SCRAM secret of a password (random salt).
pub fn derive(password: &str) -> ScramSecret {
    let mut salt = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut salt);
    derive_with(password, &salt, ITERATIONS)
}

fn derive_with(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
    let salted = salted(password.as_bytes(), salt, iterations);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, &client_key);
    let server_key = hmac_sha256(&salted, b"Server Key");
    ScramSecret {
        salt: B64.encode(salt),
        iterations,
        stored_key: B64.encode(stored_key.as_ref()),
        server_key: B64.encode(server_key),
    }
}

/// Why a SCRAM exchange failed; the `e=` value of RFC 5802 §7 where one fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    Malformed,
    /// The client wants channel binding the server cannot give, or asks for a
    /// downgrade ("y" while the server offers -PLUS).
    ChannelBinding,
    Proof,
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// "n", "y" or the channel-binding name of "p=NAME".
    pub cbind: String,
    /// The gs2 header as sent ("n,,", "p=tls-exporter,,"…).
    pub gs2_header: String,
    pub user: String,
    pub nonce: String,
    /// client-first-message-bare.
    pub bare: String,
}

fn unescape_name(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
    let mut parts = text.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ScramError::Malformed);
    };
    let cbind = match flag {
        "n" | "y" => flag.to_string(),
        f => f
            .strip_prefix("p=")
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed)?
            .to_string(),
    };
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(ScramError::Malformed);
    }
    let mut user = None;
    let mut nonce = None;
    for (i, attr) in bare.split(',').enumerate() {
        match (i, attr.split_once('=')) {
            (0, Some(("n", u))) => user = unescape_name(u),
            (1, Some(("r", r)))
                if !r.is_empty() && r.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') =>
            {
                nonce = Some(r.to_string())
            }
            (_, Some(("m", _))) => return Err(ScramError::Malformed),
            (i, _) if i >= 2 => {}
            _ => return Err(ScramError::Malformed),
        }
    }
    let (Some(user), Some(nonce)) = (user, nonce) else {
        return Err(ScramError::Malformed);
    };
    Ok(ClientFirst {
        gs2_header: format!("{flag},{authzid},"),
        cbind,
        user,
        nonce,
        bare: bare.to_string(),
    })
}

/// One server side of an exchange, after the client's first message.
pub struct ServerExchange {
    first: ClientFirst,
    nonce: String,
    server_first: String,
    secret: ScramSecret,
}

impl ServerExchange {
    /// Starts with the account's secret; `None` (no such account, or no secret
    /// yet) runs the exchange with a made-up one so it fails only at the proof.
    pub fn new(first: ClientFirst, secret: Option<ScramSecret>) -> ServerExchange {
        let rng = SystemRandom::new();
        let mut r = [0u8; 18];
        let _ = rng.fill(&mut r);
        let nonce = format!("{}{}", first.nonce, B64.encode(r));
        let secret = secret.unwrap_or_else(|| {
            let mut fake = [0u8; 32];
            let _ = rng.fill(&mut fake);
            ScramSecret {
                salt: B64.encode(&fake[..16]),
                iterations: ITERATIONS,
                stored_key: B64.encode(fake),
                server_key: B64.encode(fake),
            }
        });
        let server_first = format!("r={nonce},s={},i={}", secret.salt, secret.iterations);
        ServerExchange {
            first,
            nonce,
            server_first,
            secret,
        }
    }

    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client's final message against the channel-binding data the
    /// client asked for; returns the server-final message ("v=…").
    pub fn finish(&self, msg: &[u8], bindings: &ChannelBindings) -> Result<String, ScramError> {
        let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut c = None;
        let mut r = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => c = Some(v),
                Some(("r", v)) => r = Some(v),
                Some(_) => {}
                None => return Err(ScramError::Malformed),
            }
        }
        if r != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed);
        }
        let cbind_input = B64
            .decode(c.ok_or(ScramError::Malformed)?)
            .map_err(|_| ScramError::Malformed)?;
        let mut expected = self.first.gs2_header.as_bytes().to_vec();
        if !matches!(self.first.cbind.as_str(), "n" | "y") {
            let data = bindings
                .get(&self.first.cbind)
                .ok_or(ScramError::ChannelBinding)?;
            expected.extend_from_slice(&data);
        }
        if cbind_input != expected {
            return Err(ScramError::ChannelBinding);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        let stored_key = B64
            .decode(&self.secret.stored_key)
            .map_err(|_| ScramError::Proof)?;
        let server_key = B64
            .decode(&self.secret.server_key)
            .map_err(|_| ScramError::Proof)?;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::Proof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let computed = digest::digest(&digest::SHA256, &client_key);
        let same = computed.as_ref().len() == stored_key.len()
            && computed
                .as_ref()
                .iter()
                .zip(&stored_key)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(ScramError::Proof);
        }
        let verifier = hmac_sha256(&server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(verifier)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's example: user "user", password "pencil".
    #[test]
    fn rfc_7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let secret = derive_with("pencil", &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.user, "user");
        let mut ex = ServerExchange::new(first, Some(secret));
        // The example's server nonce, to replay its messages.
        ex.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        ex.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ex.nonce);
        let final_msg = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let v = ex.finish(final_msg, &ChannelBindings::default()).unwrap();
        assert_eq!(v, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let bad = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAAZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            ex.finish(bad, &ChannelBindings::default()),
            Err(ScramError::Proof)
        );
    }

    #[test]
    fn client_first_messages() {
        let f = parse_client_first(b"p=tls-exporter,,n=a=2Cb=3Dc,r=abc").unwrap();
        assert_eq!(f.cbind, "tls-exporter");
        assert_eq!(f.user, "a,b=c");
        assert_eq!(f.gs2_header, "p=tls-exporter,,");
        assert!(parse_client_first(b"x,,n=a,r=b").is_err());
        assert!(parse_client_first(b"n,,m=ext,n=a,r=b").is_err());
        assert!(parse_client_first(b"n,,n=a").is_err());
        assert!(parse_client_first(b"n,,n=a=ZZ,r=b").is_err());
    }

    #[test]
    fn channel_binding_must_match() {
        let secret = derive("pw");
        let bindings = ChannelBindings {
            tls_exporter: Some(vec![7; 32]),
            server_certificate: None,
        };
        let first = parse_client_first(b"p=tls-exporter,,n=u,r=nonce").unwrap();
        let ex = ServerExchange::new(first, Some(secret.clone()));
        let mut cbind = b"p=tls-exporter,,".to_vec();
        cbind.extend_from_slice(&[8; 32]);
        let msg = format!(
            "c={},r={},p={}",
            B64.encode(&cbind),
            ex.nonce,
            B64.encode([0u8; 32])
        );
        assert_eq!(
            ex.finish(msg.as_bytes(), &bindings),
            Err(ScramError::ChannelBinding)
        );
        let first = parse_client_first(b"p=tls-server-end-point,,n=u,r=nonce").unwrap();
        let ex = ServerExchange::new(first, Some(secret));
        let msg = format!("c=eA==,r={},p=AAAA", ex.nonce);
        assert_eq!(
            ex.finish(msg.as_bytes(), &bindings),
            Err(ScramError::ChannelBinding)
        );
    }
}
