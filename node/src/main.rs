//! The `raftkv` server binary.

fn main() {
    eprintln!("raftkv: the server is not built yet (issue 4)");
    std::process::exit(2);
}
