//! How many sign-in attempts may be made, and by whom (OWASP's guidance against brute force
//! without lockout of real users).
//!
//! An attempt is *reserved* before its password is checked, so parallel requests cannot all pass
//! a "blocked?" test before any of them is counted. A reservation stays as a failure unless the
//! sign-in succeeds. The buckets an attempt counts against depend on who makes it:
//!
//! - a browser holding a device cookie of this account (it signed in before): only its own
//!   bucket, so nobody else's failures can lock it out;
//! - anyone else: the (account, client address) bucket, the client address bucket, and an
//!   account-wide bucket for clients without a device cookie, which bounds guessing spread over
//!   many addresses while signed-in-before browsers keep working.
//!
//! In memory: each web instance counts on its own, which bounds guessing to instances × limit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A bucket an attempt counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Bucket {
    /// One account from one client address.
    AccountClient(String, IpAddr),
    /// One client address, whatever the account.
    Client(IpAddr),
    /// One account from every client without a device cookie.
    AccountUntrusted(String),
    /// One signed-in-before browser (its device cookie's id).
    Device(String),
}

impl Bucket {
    fn limit(&self) -> usize {
        match self {
            Bucket::AccountClient(..) | Bucket::Device(_) => SignInLimiter::PER_ACCOUNT_CLIENT,
            Bucket::Client(_) => SignInLimiter::PER_CLIENT,
            Bucket::AccountUntrusted(_) => SignInLimiter::PER_ACCOUNT_UNTRUSTED,
        }
    }

    /// Buckets a success empties: failures of this account by this client or device.
    fn cleared_by_success(&self) -> bool {
        matches!(self, Bucket::AccountClient(..) | Bucket::Device(_))
    }
}

/// Who makes an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub email: String,
    pub client: IpAddr,
    /// The id of a valid device cookie for this account, if the browser sent one.
    pub device: Option<String>,
}

impl Attempt {
    fn buckets(&self) -> Vec<Bucket> {
        let account = self.email.trim().to_lowercase();
        match &self.device {
            Some(device) => vec![Bucket::Device(device.clone())],
            None => vec![
                Bucket::AccountClient(account.clone(), self.client),
                Bucket::Client(self.client),
                Bucket::AccountUntrusted(account),
            ],
        }
    }
}

/// An attempt counted before its password is checked: a failure unless
/// [`SignInLimiter::succeeded`] or [`SignInLimiter::release`] says otherwise.
#[derive(Debug)]
#[must_use = "a reservation is a failure unless the sign-in succeeds or is released"]
pub struct Reservation {
    buckets: Vec<Bucket>,
    at: Instant,
}

/// Failed (or in-flight) sign-in attempts per bucket, in a sliding window.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    attempts: Mutex<HashMap<Bucket, VecDeque<Instant>>>,
}

impl SignInLimiter {
    /// Failures allowed per account from one client address (or one device) in the window.
    pub const PER_ACCOUNT_CLIENT: usize = 5;
    /// Failures allowed per client address in the window, whatever the accounts.
    pub const PER_CLIENT: usize = 20;
    /// Failures allowed per account from all clients without a device cookie in the window.
    pub const PER_ACCOUNT_UNTRUSTED: usize = 100;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);
    /// Distinct buckets kept before old ones are forgotten (bounded memory under a flood).
    const MAX_BUCKETS: usize = 100_000;

    /// Counts the attempt, or says how long until one may be made.
    pub fn reserve(&self, attempt: &Attempt) -> Result<Reservation, Duration> {
        let now = Instant::now();
        let buckets = attempt.buckets();
        let mut map = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wait: Option<Duration> = None;
        for bucket in &buckets {
            let Some(times) = map.get_mut(bucket) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Self::WINDOW)
            {
                times.pop_front();
            }
            if times.len() >= bucket.limit()
                && let Some(oldest) = times.front()
            {
                let left = Self::WINDOW.saturating_sub(now.duration_since(*oldest));
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        if let Some(wait) = wait {
            return Err(wait.max(Duration::from_secs(1)));
        }
        if map.len() > Self::MAX_BUCKETS {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < Self::WINDOW)
            });
        }
        for bucket in &buckets {
            map.entry(bucket.clone()).or_default().push_back(now);
        }
        Ok(Reservation { buckets, at: now })
    }

    /// The password was right: the attempt does not count, and neither do this account's
    /// earlier failures from this client or device (other accounts' failures from the same
    /// address still do, so signing in to one's own account cannot reset a guesser's count).
    pub fn succeeded(&self, reservation: Reservation) {
        let mut map = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        for bucket in &reservation.buckets {
            if bucket.cleared_by_success() {
                map.remove(bucket);
            } else {
                Self::forget(&mut map, bucket, reservation.at);
            }
        }
    }

    /// The password was not checked (the server was busy): the attempt does not count.
    pub fn release(&self, reservation: Reservation) {
        let mut map = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        for bucket in &reservation.buckets {
            Self::forget(&mut map, bucket, reservation.at);
        }
    }

    fn forget(map: &mut HashMap<Bucket, VecDeque<Instant>>, bucket: &Bucket, at: Instant) {
        if let Some(times) = map.get_mut(bucket)
            && let Some(i) = times.iter().position(|t| *t == at)
        {
            times.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(email: &str, client: [u8; 4], device: Option<&str>) -> Attempt {
        Attempt {
            email: email.into(),
            client: IpAddr::from(client),
            device: device.map(str::to_owned),
        }
    }

    #[test]
    fn reservations_count_before_the_check_finishes() {
        let limiter = SignInLimiter::default();
        let a = attempt("A@x.org", [10, 0, 0, 1], None);
        // In flight, none finished yet: the sixth is refused all the same.
        let held: Vec<_> = (0..SignInLimiter::PER_ACCOUNT_CLIENT)
            .map(|_| limiter.reserve(&a).unwrap())
            .collect();
        assert!(
            limiter
                .reserve(&attempt("a@X.org", [10, 0, 0, 1], None))
                .is_err()
        );
        // The same account from elsewhere, and another account from here, are not blocked.
        assert!(
            limiter
                .reserve(&attempt("a@x.org", [10, 0, 0, 2], None))
                .is_ok()
        );
        assert!(
            limiter
                .reserve(&attempt("b@x.org", [10, 0, 0, 1], None))
                .is_ok()
        );
        // A success from this client clears this account's failures from it.
        let mut held = held.into_iter();
        limiter.succeeded(held.next().unwrap());
        assert!(limiter.reserve(&a).is_ok());
    }

    #[test]
    fn a_device_that_signed_in_before_is_not_locked_out_by_others() {
        let limiter = SignInLimiter::default();
        for n in 0..SignInLimiter::PER_ACCOUNT_UNTRUSTED {
            let _ = limiter.reserve(&attempt(
                "a@x.org",
                [10, 1, (n / 250) as u8, (n % 250) as u8],
                None,
            ));
        }
        assert!(
            limiter
                .reserve(&attempt("a@x.org", [10, 2, 0, 1], None))
                .is_err()
        );
        let device = attempt("a@x.org", [10, 1, 0, 0], Some("d1"));
        assert!(limiter.reserve(&device).is_ok());
    }

    #[test]
    fn one_client_is_limited_across_accounts_and_success_does_not_reset_it() {
        let limiter = SignInLimiter::default();
        for n in 0..SignInLimiter::PER_CLIENT - 1 {
            let _ = limiter.reserve(&attempt(&format!("u{n}@x.org"), [10, 0, 0, 9], None));
        }
        let own = limiter
            .reserve(&attempt("me@x.org", [10, 0, 0, 9], None))
            .unwrap();
        limiter.succeeded(own);
        let _ = limiter
            .reserve(&attempt("other@x.org", [10, 0, 0, 9], None))
            .unwrap();
        assert!(
            limiter
                .reserve(&attempt("next@x.org", [10, 0, 0, 9], None))
                .is_err()
        );
    }

    #[test]
    fn a_released_attempt_does_not_count() {
        let limiter = SignInLimiter::default();
        let a = attempt("a@x.org", [10, 0, 0, 1], None);
        for _ in 0..SignInLimiter::PER_ACCOUNT_CLIENT * 3 {
            limiter.release(limiter.reserve(&a).unwrap());
        }
        assert!(limiter.reserve(&a).is_ok());
    }
}
