//! Who is calling: keys, strict JWS, credentials and their delegation chains, proofs of
//! possession.

mod chain;
mod credential;
mod external;
pub(crate) mod jws;
mod keys;
pub(crate) mod proof;

pub use chain::{inspect_chain, InspectedChain, TrustedIssuer, VerifiedChain};
pub(crate) use chain::{scope_entry_covers, ChainPolicy, ChainVerifier, DELEGATE_SEPARATOR};
pub use credential::{delegate, digest, inspect, issue_root, CredentialClaims, CredentialSpec, InspectedCredential};
pub use external::ExternalIssuer;
pub use keys::{Jwk, KeyPair, PublicKey};
pub use proof::{call_digest, create_proof};
