//! Agent passwords, hashed with argon2id (the crate's defaults follow OWASP's recommendation).
//!
//! Sign-in checks go through a [`VerifierPool`]: each check needs the hash's whole memory cost
//! (19 MiB by default), so a burst of checks on the blocking pool would cost one allocation each,
//! and the allocator keeps what it got from the system.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::oneshot;

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("passwords must have at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("hashing failed: {0}")]
    Hash(String),
}

pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

pub fn verify(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Password checks on a fixed set of threads, each reusing one Argon2 memory area: memory stays at
/// `workers` × the hash's memory cost however many sign-ins arrive at once. Checks beyond the
/// workers wait in a bounded queue; past that the pool says it is busy instead of queueing more.
#[derive(Debug, Clone)]
pub struct VerifierPool {
    queue: SyncSender<Check>,
    workers: usize,
}

/// The pool's queue is full: the caller should ask the client to retry shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct Busy;

struct Check {
    password: String,
    stored_hash: String,
    verdict: oneshot::Sender<bool>,
}

impl VerifierPool {
    /// `workers` threads (at least one) and room for `queued` waiting checks.
    pub fn new(workers: usize, queued: usize) -> Self {
        let workers = workers.max(1);
        let (queue, checks) = std::sync::mpsc::sync_channel(queued);
        let checks = Arc::new(Mutex::new(checks));
        for n in 0..workers {
            let checks = Arc::clone(&checks);
            // A thread that cannot start leaves the others; with none, checks report `Busy`.
            if let Err(error) = std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || work(&checks))
            {
                tracing::error!(%error, "Password check thread not started.");
            }
        }
        VerifierPool { queue, workers }
    }

    /// One worker per CPU, and 32 waiting checks per CPU: a waiting check holds only its
    /// strings, and at ~50 ms a check the last one waits about 1.6 s.
    pub fn for_this_machine() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        Self::new(cpus, cpus * 32)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether `password` matches `stored_hash`; `Busy` when the queue is full.
    pub async fn verify(&self, password: String, stored_hash: String) -> Result<bool, Busy> {
        let (verdict, answer) = oneshot::channel();
        let check = Check {
            password,
            stored_hash,
            verdict,
        };
        match self.queue.try_send(check) {
            Ok(()) => answer.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn work(checks: &Mutex<Receiver<Check>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while waiting for the next check, not while checking.
        let next = checks.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(check) = next else { return };
        let matches = verify_in(&check.password, &check.stored_hash, &mut memory);
        let _ = check.verdict.send(matches);
    }
}

/// [`verify`] with the caller's memory area, grown to the hash's memory cost when needed.
fn verify_in(password: &str, stored_hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored_hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        // `Output` compares in constant time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// A random password for generated accounts (demo, `user add` without `--password`).
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse!", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert!(matches!(hash("short"), Err(PasswordError::TooShort)));
        assert_eq!(generate().len(), 16);
    }

    #[tokio::test]
    async fn the_pool_agrees_with_the_plain_check() {
        let pool = VerifierPool::new(2, 4);
        let h = hash("correct horse").unwrap();
        assert!(
            pool.verify("correct horse".into(), h.clone())
                .await
                .unwrap()
        );
        assert!(!pool.verify("wrong horse!".into(), h.clone()).await.unwrap());
        assert!(
            !pool
                .verify("correct horse".into(), "not a hash".into())
                .await
                .unwrap()
        );
        // A hash with other parameters than the defaults (the memory area grows for it).
        let params = Params::new(32 * 1024, 1, 1, None).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let other = argon
            .hash_password(b"other one", &salt)
            .unwrap()
            .to_string();
        assert!(
            pool.verify("other one".into(), other.clone())
                .await
                .unwrap()
        );
        assert!(!pool.verify("other two".into(), other).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_not_unbounded() {
        let pool = VerifierPool::new(1, 1);
        let h = hash("correct horse").unwrap();
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, h) = (pool.clone(), h.clone());
                tokio::spawn(async move { pool.verify("correct horse".into(), h).await })
            })
            .collect();
        let mut busy = 0;
        for check in checks {
            match check.await.unwrap() {
                Ok(matched) => assert!(matched),
                Err(Busy) => busy += 1,
            }
        }
        assert!(busy > 0, "8 checks on one worker with one queue slot");
    }
}
