//! `crds/workspace.yaml` must be what `crdgen` prints from `api/src/crd.rs`.

use std::path::Path;

#[test]
fn committed_crd_matches_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dispatch_operator::crdgen::CRD_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = dispatch_operator::crdgen::crd_yaml().expect("CRD serializes");
    assert!(
        committed == generated,
        "{} is stale: run `cargo run -p dispatch-operator --bin crdgen > crds/workspace.yaml`",
        path.display()
    );
}
