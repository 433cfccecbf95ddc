//! `#[no_instrument]` inside an instrumented `impl` block resolves with an import of it, which
//! is then used, without one, and written as a path; under `unused_imports` denied.
#![deny(unused_imports)]

use instrument::instrument_performance;

struct Cache(Vec<u32>);

// Imported and used only as a marker: the import is not unused.
mod imported {
    use instrument::{instrument_performance, no_instrument};

    use super::Cache;

    #[instrument_performance]
    impl Cache {
        pub fn first(&self) -> Option<u32> {
            self.0.first().copied()
        }

        #[no_instrument]
        pub fn len(&self) -> usize {
            self.0.len()
        }
    }

    // A second block in the same module.
    #[instrument_performance(slow = "1ms")]
    impl Cache {
        #[no_instrument]
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
}

// Not imported: the bare marker still resolves.
mod not_imported {
    use instrument::instrument_performance;

    use super::Cache;

    #[instrument_performance]
    impl Cache {
        #[no_instrument]
        pub fn last(&self) -> Option<u32> {
            self.0.last().copied()
        }
    }
}

// Written as a path, through a renamed crate: the `use` is not unused either.
mod by_path {
    use instrument as sdk;

    use super::Cache;

    #[sdk::instrument_performance]
    impl Cache {
        #[sdk::no_instrument]
        pub fn sum(&self) -> u32 {
            self.0.iter().sum()
        }
    }
}

// Imported at module level, used by a block inside a function.
mod in_a_function {
    use instrument::{instrument_performance, no_instrument};

    pub fn run() -> u32 {
        struct Local(u32);

        #[instrument_performance]
        impl Local {
            #[no_instrument]
            fn get(&self) -> u32 {
                self.0
            }
        }

        Local(7).get()
    }
}

// Blocks made by a macro, twice in one module.
mod from_a_macro {
    use instrument::{instrument_performance, no_instrument};

    macro_rules! wrapper {
        ($name:ident) => {
            pub struct $name(pub u8);

            #[instrument_performance]
            impl $name {
                #[no_instrument]
                pub fn get(&self) -> u8 {
                    self.0
                }
            }
        };
    }

    wrapper!(A);
    wrapper!(B);
}

// With `crate = path`, relative or not, and no import of the marker.
mod reexported {
    mod sdk {
        pub use instrument;
    }

    pub struct Relative;

    #[instrument::instrument_performance(crate = sdk::instrument)]
    impl Relative {
        #[no_instrument]
        pub fn get(&self) -> u8 {
            1
        }
    }

    pub struct SelfRelative;

    #[instrument::instrument_performance(crate = self::sdk::instrument)]
    impl SelfRelative {
        #[no_instrument]
        pub fn get(&self) -> u8 {
            2
        }
    }

    pub struct CrateRelative;

    #[instrument::instrument_performance(crate = crate::reexported::sdk::instrument)]
    impl CrateRelative {
        #[no_instrument]
        pub fn get(&self) -> u8 {
            3
        }
    }
}

#[instrument_performance]
fn free() -> u8 {
    0
}

fn main() {
    let cache = Cache(vec![1, 2]);
    assert_eq!(cache.first(), Some(1));
    assert_eq!(cache.len(), 2);
    assert!(!cache.is_empty());
    assert_eq!(cache.last(), Some(2));
    assert_eq!(cache.sum(), 3);
    assert_eq!(in_a_function::run(), 7);
    assert_eq!(from_a_macro::A(4).get() + from_a_macro::B(5).get(), 9);
    assert_eq!(reexported::Relative.get(), 1);
    assert_eq!(reexported::SelfRelative.get(), 2);
    assert_eq!(reexported::CrateRelative.get(), 3);
    assert_eq!(free(), 0);
}
