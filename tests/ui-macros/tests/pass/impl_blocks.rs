//! `#[instrument_performance]` on `impl` blocks: every method, `#[no_instrument]` exemptions and
//! method options merged over the block's.

use std::fmt;

use instrument::{instrument_performance, no_instrument};

#[derive(Debug, Clone)]
struct Cache<K> {
    entries: Vec<(K, u32)>,
}

#[instrument_performance(slow = "1ms", labels(layer = "cache"), skip(secret))]
impl<K: PartialEq + fmt::Debug> Cache<K> {
    /// Associated fn.
    pub fn new() -> Self {
        Cache {
            entries: Vec::new(),
        }
    }

    pub fn insert(&mut self, key: K, value: u32, secret: &str) {
        let _ = secret;
        self.entries.push((key, value));
    }

    pub fn get(&self, key: &K) -> Option<u32> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn get_mut(&mut self, index: usize) -> &mut u32 {
        &mut self.entries[index].1
    }

    #[no_instrument]
    pub const fn capacity_hint() -> usize {
        16
    }

    #[no_instrument]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[instrument_performance(name = "cache.clear", capture(%reason))]
    pub fn clear(&mut self, reason: &str) {
        let _ = reason;
        self.entries.clear();
    }

    #[instrument_performance]
    pub async fn load(&self, key: K) -> Result<u32, String> {
        self.get(&key).ok_or_else(|| format!("{key:?} missing"))
    }

    type_alias_in_impl!();
}

macro_rules! type_alias_in_impl {
    () => {
        pub fn from_macro(&self) -> usize {
            self.entries.len()
        }
    };
}
use type_alias_in_impl;

#[instrument_performance(audit)]
impl fmt::Display for Cache<u8> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} entries", self.entries.len())
    }
}

trait Backend {
    const NAME: &'static str;
    type Key;
    fn fetch(&self, key: Self::Key) -> Result<u32, std::io::Error>;
}

#[instrument_performance]
impl Backend for Cache<u8> {
    const NAME: &'static str = "cache";
    type Key = u8;

    fn fetch(&self, key: u8) -> Result<u32, std::io::Error> {
        self.get(&key)
            .ok_or_else(|| std::io::Error::other("missing"))
    }
}

#[instrument_performance]
impl<'a> Backend for &'a [u32] {
    const NAME: &'static str = "slice";
    type Key = usize;

    fn fetch(&self, key: usize) -> Result<u32, std::io::Error> {
        self.get(key)
            .copied()
            .ok_or_else(|| std::io::Error::other("out of range"))
    }
}

// `no_instrument` resolves anywhere and changes nothing.
#[no_instrument]
fn plain() -> u8 {
    1
}

fn main() {
    let mut cache = Cache::new();
    cache.insert(1u8, 10, "hunter2");
    assert_eq!(cache.get(&1), Some(10));
    *cache.get_mut(0) += 1;
    assert_eq!(cache.len(), 1);
    assert_eq!(Cache::<u8>::capacity_hint(), 16);
    assert_eq!(cache.from_macro(), 1);
    assert_eq!(cache.to_string(), "1 entries");
    assert_eq!(cache.fetch(1).unwrap(), 11);
    assert!(cache.fetch(2).is_err());
    let _ = cache.load(1);
    cache.clear("test");
    let slice: &[u32] = &[1, 2];
    assert_eq!(slice.fetch(1).unwrap(), 2);
    assert_eq!(<&[u32] as Backend>::NAME, "slice");
    assert_eq!(<Cache<u8> as Backend>::NAME, "cache");
    assert_eq!(plain(), 1);
}
