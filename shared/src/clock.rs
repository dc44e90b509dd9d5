//! Time as a dependency: loops and the PAPER venue take a `Clock`, so tests and replays drive time
//! without sleeping.
//!
//! [`ReplayClock`] is simulated time as a pure function of the wall clock,
//! `now = start + (wall_now - origin) * speed`, so several processes given the same `start`,
//! `origin` and `speed` agree on the simulated time without talking to each other. Durations
//! measured by Redis (lock TTLs, the leader lease, the delayed queue) stay wall time; code that
//! compares a wall-time threshold with a difference of `now()` values scales it by
//! [`Clock::speed`], and code that hands a simulated instant to a wall-time system converts it
//! with [`Clock::to_wall`].

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Simulated seconds per wall second (1 for every clock but a replay).
    fn speed(&self) -> u32 {
        1
    }

    /// The wall-clock instant at which this clock reads `t` (itself for every clock but a replay).
    fn to_wall(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
    pub fn advance(&self, d: Duration) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which clock the binaries run on (config `clock.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Wall-clock time.
    #[default]
    System,
    /// [`ReplayClock`]: simulated time running `replay_speed` times faster than the wall clock.
    Replay,
}

/// Simulated time: `start + (wall_now - origin) * speed`, a pure function of the wall clock.
#[derive(Debug, Clone)]
pub struct ReplayClock {
    start: DateTime<Utc>,
    origin: DateTime<Utc>,
    speed: u32,
    wall: Arc<dyn Clock>,
}

impl ReplayClock {
    /// Reads `start` at the wall instant `origin` and runs `speed` (at least 1) times faster.
    pub fn new(
        start: DateTime<Utc>,
        origin: DateTime<Utc>,
        speed: u32,
    ) -> Result<Self, ConfigError> {
        Self::with_wall(start, origin, speed, Arc::new(SystemClock))
    }

    /// Like [`ReplayClock::new`] on another wall clock (tests).
    pub fn with_wall(
        start: DateTime<Utc>,
        origin: DateTime<Utc>,
        speed: u32,
        wall: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        if !(1..=MAX_REPLAY_SPEED).contains(&speed) {
            return Err(ConfigError::new(format!(
                "clock.replay_speed: must be 1..={MAX_REPLAY_SPEED}, got {speed}"
            )));
        }
        Ok(Self {
            start,
            origin,
            speed,
            wall,
        })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn origin(&self) -> DateTime<Utc> {
        self.origin
    }
}

/// Fastest accepted replay: a year of simulated time per wall minute is far beyond any use.
pub const MAX_REPLAY_SPEED: u32 = 1_000_000;

impl Clock for ReplayClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.wall.now() - self.origin;
        // Whole microseconds are plenty and keep the product far from overflow.
        let scaled = elapsed
            .num_microseconds()
            .and_then(|us| us.checked_mul(i64::from(self.speed)))
            .map(Duration::microseconds)
            .unwrap_or(if elapsed < Duration::zero() {
                Duration::MIN
            } else {
                Duration::MAX
            });
        self.start
            .checked_add_signed(scaled)
            .unwrap_or(if scaled < Duration::zero() {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            })
    }

    fn speed(&self) -> u32 {
        self.speed
    }

    fn to_wall(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let ahead = t - self.start;
        let wall = ahead
            .num_microseconds()
            .map(|us| Duration::microseconds(us / i64::from(self.speed)))
            .unwrap_or(ahead / i32::try_from(self.speed).unwrap_or(i32::MAX));
        self.origin.checked_add_signed(wall).unwrap_or(t)
    }
}

/// The clock of a process, from the `[clock]` section; an unset `replay_origin` is
/// `process_start`. Fails on a replay without `replay_start` or with a bad speed.
pub fn from_config(
    config: &crate::config::ClockConfig,
    process_start: DateTime<Utc>,
) -> Result<Arc<dyn Clock>, ConfigError> {
    match config.mode {
        ClockMode::System => Ok(Arc::new(SystemClock)),
        ClockMode::Replay => {
            let start = config.replay_start.ok_or_else(|| {
                ConfigError::new("clock.replay_start: required when clock.mode is \"replay\"")
            })?;
            let origin = config.replay_origin.unwrap_or(process_start);
            Ok(Arc::new(ReplayClock::new(
                start,
                origin,
                config.replay_speed,
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(Duration::seconds(90));
        assert_eq!(c.now(), t0 + Duration::seconds(90));
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn replay_runs_speed_times_faster_from_its_start() {
        let origin = at(1_700_000_000);
        let start = at(1_637_107_200); // 2021-11-17T00:00:00Z
        let wall = Arc::new(ManualClock::new(origin));
        let c = ReplayClock::with_wall(start, origin, 600, wall.clone()).unwrap();
        assert_eq!(c.now(), start);
        assert_eq!(c.speed(), 600);
        wall.advance(Duration::seconds(1));
        assert_eq!(c.now(), start + Duration::minutes(10));
        wall.advance(Duration::milliseconds(500));
        assert_eq!(c.now(), start + Duration::minutes(15));
        // Before the origin the replay runs backwards from its start, no panic.
        wall.set(origin - Duration::seconds(2));
        assert_eq!(c.now(), start - Duration::minutes(20));
    }

    #[test]
    fn two_replay_clocks_with_the_same_parameters_agree() {
        let origin = at(1_700_000_000);
        let start = at(1_637_107_200);
        let wall = Arc::new(ManualClock::new(origin + Duration::seconds(7)));
        let a = ReplayClock::with_wall(start, origin, 300, wall.clone()).unwrap();
        let b = ReplayClock::with_wall(start, origin, 300, wall.clone()).unwrap();
        assert_eq!(a.now(), b.now());
        assert_eq!(a.now(), start + Duration::minutes(35));
    }

    #[test]
    fn to_wall_inverts_now() {
        let origin = at(1_700_000_000);
        let start = at(1_637_107_200);
        let wall = Arc::new(ManualClock::new(origin));
        let c = ReplayClock::with_wall(start, origin, 1_200, wall.clone()).unwrap();
        let sim = start + Duration::hours(2);
        let w = c.to_wall(sim);
        assert_eq!(w, origin + Duration::seconds(6));
        wall.set(w);
        assert_eq!(c.now(), sim);
        assert_eq!(SystemClock.to_wall(sim), sim);
        assert_eq!(SystemClock.speed(), 1);
    }

    #[test]
    fn extreme_values_saturate_instead_of_panicking() {
        let wall = Arc::new(ManualClock::new(DateTime::<Utc>::MAX_UTC));
        let c = ReplayClock::with_wall(at(0), DateTime::<Utc>::MIN_UTC, MAX_REPLAY_SPEED, wall)
            .unwrap();
        assert_eq!(c.now(), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn speed_must_be_at_least_one() {
        let err = ReplayClock::new(at(0), at(0), 0).unwrap_err().to_string();
        assert!(err.contains("clock.replay_speed"), "{err}");
        assert!(ReplayClock::new(at(0), at(0), MAX_REPLAY_SPEED + 1).is_err());
    }

    #[test]
    fn from_config_builds_the_configured_clock() {
        use crate::config::ClockConfig;
        let process_start = at(1_700_000_000);
        let system = from_config(&ClockConfig::default(), process_start).unwrap();
        assert_eq!(system.speed(), 1);
        let replay = ClockConfig {
            mode: ClockMode::Replay,
            replay_start: Some(at(1_637_107_200)),
            replay_origin: None,
            replay_speed: 60,
        };
        let c = from_config(&replay, process_start).unwrap();
        assert_eq!(c.speed(), 60);
        // The origin defaults to the process start: the wall clock is long past it.
        assert!(c.now() > at(1_637_107_200) + Duration::days(365));
        let err = from_config(
            &ClockConfig {
                replay_start: None,
                ..replay
            },
            process_start,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("clock.replay_start"), "{err}");
    }
}
