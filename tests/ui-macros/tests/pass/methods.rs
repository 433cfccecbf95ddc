//! Methods with every receiver, associated functions, trait impls and trait default methods.

use instrument::instrument_performance;

#[derive(Debug, Default)]
struct Store {
    values: Vec<u32>,
    name: String,
}

impl Store {
    #[instrument_performance]
    fn new(name: &str) -> Self {
        Store {
            values: Vec::new(),
            name: name.to_owned(),
        }
    }

    #[instrument_performance]
    fn name(&self) -> &str {
        &self.name
    }

    #[instrument_performance]
    fn push(&mut self, value: u32) {
        self.values.push(value);
    }

    #[instrument_performance]
    fn first_mut(&mut self) -> &mut u32 {
        &mut self.values[0]
    }

    #[instrument_performance]
    fn get_mut(&mut self, index: usize) -> Option<&mut u32> {
        self.values.get_mut(index)
    }

    #[instrument_performance]
    fn into_values(self) -> Vec<u32> {
        self.values
    }

    #[instrument_performance]
    fn boxed(self: Box<Self>) -> usize {
        self.values.len()
    }

    #[instrument_performance]
    fn mut_self(mut self, value: u32) -> Self {
        self.values.push(value);
        self
    }

    #[instrument_performance]
    #[must_use]
    pub fn pinned(self: std::pin::Pin<&mut Self>) -> usize {
        self.values.len()
    }
}

trait Describe {
    fn describe(&self) -> String;

    #[instrument_performance]
    fn shout(&self) -> String {
        self.describe().to_uppercase()
    }

    #[instrument_performance]
    fn default_with_self_return() -> Self
    where
        Self: Default,
    {
        Self::default()
    }
}

impl Describe for Store {
    #[instrument_performance]
    fn describe(&self) -> String {
        format!("store {}", self.name)
    }
}

struct Wrapper<T>(T);

impl<T: Clone> Wrapper<T> {
    #[instrument_performance]
    fn get(&self) -> T {
        self.0.clone()
    }
}

fn main() {
    let mut store = Store::new("a");
    assert_eq!(store.name(), "a");
    store.push(1);
    *store.first_mut() += 1;
    if let Some(value) = store.get_mut(0) {
        *value += 1;
    }
    assert_eq!(store.describe(), "store a");
    assert_eq!(store.shout(), "STORE A");
    let mut store = store.mut_self(4);
    assert_eq!(std::pin::Pin::new(&mut store).pinned(), 2);
    assert_eq!(Box::new(Store::default_with_self_return()).boxed(), 0);
    assert_eq!(store.into_values(), [3, 4]);
    assert_eq!(Wrapper(5).get(), 5);
}
