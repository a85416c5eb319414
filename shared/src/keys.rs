//! Client keys: the secret a Smokey instance puts in its subscribe frame. Only a SHA-256
//! hash is stored, so a leaked table does not leak keys.

use sha2::{Digest, Sha256};

use crate::store::{ClientKey, ClientKeys, Store, StoreError};

/// A fresh key: 32 random bytes as 64 hex digits.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system has a random source");
    hex::encode(bytes)
}

/// SHA-256 of a key, hex: what is stored.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Why a key was not added.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The name is taken.
    #[error("a client key named {0:?} exists already; revoke it first or pick another name")]
    NameTaken(String),
    /// The name has characters a name may not.
    #[error("a key name is 1 to 64 letters, digits, '-', '_' or '.', got {0:?}")]
    BadName(String),
    /// The key is too short to be a secret.
    #[error("a client key is at least 16 characters")]
    TooShort,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores the hash of `key` under `name`, and starts the key's replay cursor at the newest
/// message: from now on, what the key misses before it subscribes is replayed to it (within
/// the replay window), and nothing older is.
pub async fn add(store: &dyn Store, name: &str, key: &str, now: i64) -> Result<(), KeyError> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid_name {
        return Err(KeyError::BadName(name.to_string()));
    }
    if key.len() < 16 {
        return Err(KeyError::TooShort);
    }
    // Read before the key exists: a message sent meanwhile is replayed, not skipped.
    let head = store.outbox_head().await?;
    let record = ClientKey {
        name: name.to_string(),
        key_hash: hash(key),
        created_at: now,
    };
    if !store.add_client_key(&record).await? {
        return Err(KeyError::NameTaken(name.to_string()));
    }
    if let Err(error) = store.start_cursor(name, head, now).await {
        // A key without its cursor would skip what it missed: not added, try again.
        let _ = store.revoke_client_key(name).await;
        return Err(error.into());
    }
    Ok(())
}

/// Whether `name` is stored with exactly `key`.
pub async fn holds(store: &dyn ClientKeys, name: &str, key: &str) -> Result<bool, StoreError> {
    Ok(store
        .client_key_by_hash(&hash(key))
        .await?
        .is_some_and(|k| k.name == name))
}

/// The name of the client that holds `key`, if it is known.
pub async fn identify(store: &dyn ClientKeys, key: &str) -> Result<Option<String>, StoreError> {
    Ok(store.client_key_by_hash(&hash(key)).await?.map(|k| k.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashes_are_stable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
