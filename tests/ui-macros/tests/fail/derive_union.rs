use instrument::ErrorKind;

#[derive(ErrorKind)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
