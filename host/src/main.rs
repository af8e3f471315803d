//! `flowtag`: a log shipper for network flows that tags anomalous ones on the node. The
//! command line lives in [`flowtag_host::cli`].

fn main() {
    std::process::exit(flowtag_host::cli::main());
}
