//! What a client sends during a login (issue 24): SASL responses (base64, `*`,
//! `=`), PLAIN and LOGIN exchanges, SCRAM-SHA-256 client messages against a
//! real server exchange, XOAUTH2/OAUTHBEARER messages and the JWT they carry.
//! Any bytes give an answer or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use casella_directory::Protocol;
use casella_directory::oauth::{OAuthConfig, TokenValidator, parse_client_message};
use casella_directory::sasl::{self, PasswordExchange, Step};
use casella_directory::scram::{self, ChannelBindings, ServerExchange};
use libfuzzer_sys::fuzz_target;

fn secret() -> &'static casella_store::ScramSecret {
    static SECRET: OnceLock<casella_store::ScramSecret> = OnceLock::new();
    SECRET.get_or_init(|| scram::derive("pencil"))
}

fn validator() -> &'static TokenValidator {
    static V: OnceLock<TokenValidator> = OnceLock::new();
    V.get_or_init(|| {
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k1","x":"{x}","y":"{y}"}},
                {{"kty":"RSA","kid":"k2","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}}]}}"#
        );
        let config = OAuthConfig {
            issuer: "https://issuer.test".into(),
            audience: "casella".into(),
            scope_imap: "mail.imap".into(),
            scope_pop: String::new(),
            scope_submission: String::new(),
            user_claims: vec!["email".into(), "sub".into()],
            leeway: 60,
        };
        TokenValidator::new(config, &jwks).expect("jwks")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 5 {
        0 => {
            let _ = sasl::decode_response(&text);
            let _ = sasl::decode_plain(rest);
        }
        1 => {
            // A PLAIN or LOGIN exchange fed the input's NUL-separated pieces.
            let mechanism = if rest.first().is_some_and(|b| b & 1 == 1) {
                "LOGIN"
            } else {
                "PLAIN"
            };
            let mut answers = rest.split(|&b| b == b'\n');
            let initial = answers.next().filter(|a| !a.is_empty()).map(<[u8]>::to_vec);
            let (mut exchange, mut step) = PasswordExchange::start(mechanism, initial);
            for _ in 0..4 {
                match step {
                    Step::Challenge(_) => {
                        step = exchange.respond(
                            answers
                                .next()
                                .map(<[u8]>::to_vec)
                                .ok_or(sasl::SaslError::Cancelled),
                        );
                    }
                    Step::Done(_) => break,
                }
            }
        }
        2 => {
            // SCRAM: the client-first message, then the client-final one.
            let (first, last) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            if let Ok(client_first) = scram::parse_client_first(first) {
                let exchange = ServerExchange::new(client_first, Some(secret().clone()));
                assert!(!exchange.server_first().is_empty());
                let _ = exchange.finish(last, &ChannelBindings::default());
            }
        }
        3 => {
            for mechanism in ["XOAUTH2", "OAUTHBEARER"] {
                let _ = parse_client_message(mechanism, rest);
            }
        }
        _ => {
            let _ = validator().validate(&text, Protocol::Imap, 1_800_000_000);
        }
    }
});
