//! Prints the Workspace CRD as YAML: `crdgen > crds/workspace.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", dispatch_operator::crdgen::crd_yaml()?);
    Ok(())
}
