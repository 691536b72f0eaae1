//! The official validators of attestation documents, from the virtualenv
//! ci/test makes (pinned in ci/attest-tools/requirements.txt): spdx-tools,
//! CycloneDX's 1.6 JSON schema through cyclonedx-python-lib, and
//! in-toto-attestation's Statement and SLSA provenance v1 protos.
#![allow(dead_code)]

use super::{output_text, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The validators' virtualenv (ci/test makes it).
pub fn tools() -> PathBuf {
    let d =
        PathBuf::from(std::env::var("KILN_TEST_ATTEST_TOOLS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/attest-tools").into()
        }));
    assert!(
        d.join("bin/pyspdxtools").is_file(),
        "no spdx-tools in {}: ci/test installs them",
        d.display()
    );
    d
}

pub fn validate_spdx(doc: &Path) {
    let out = run(Command::new(tools().join("bin/pyspdxtools"))
        .arg("-i")
        .arg(doc));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "spdx-tools refuses {}:\n{}",
        doc.display(),
        output_text(&out)
    );
}

pub fn validate_cyclonedx(doc: &Path) {
    let script = "import sys\n\
from cyclonedx.schema import SchemaVersion\n\
from cyclonedx.validation.json import JsonStrictValidator\n\
err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
print(err if err else 'valid')\n\
sys.exit(1 if err else 0)\n";
    let out = run(Command::new(tools().join("bin/python"))
        .args(["-c", script])
        .arg(doc));
    assert!(
        out.status.success(),
        "the CycloneDX 1.6 schema refuses {}:\n{}",
        doc.display(),
        output_text(&out)
    );
}

/// An in-toto v1 Statement whose predicate is SLSA provenance v1: parsed
/// strictly (no unknown field) into in-toto-attestation's protos, then checked
/// with its own validation and the fields SLSA requires.
pub fn validate_provenance(doc: &Path) {
    let script = r#"import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
doc = json.load(open(sys.argv[1]))
st = json_format.ParseDict(doc, statement_pb2.Statement())
Statement.copy_from_pb(st).validate()
assert doc['predicateType'] == 'https://slsa.dev/provenance/v1', doc['predicateType']
prov = json_format.ParseDict(doc['predicate'], provenance_pb2.Provenance())
assert prov.build_definition.build_type, 'buildType is required'
assert prov.run_details.builder.id, 'runDetails.builder.id is required'
for d in prov.build_definition.resolved_dependencies:
    assert d.uri or d.digest or d.content, 'a ResourceDescriptor needs uri, digest or content'
print('valid')
"#;
    let out = run(Command::new(tools().join("bin/python"))
        .args(["-c", script])
        .arg(doc));
    assert!(
        out.status.success(),
        "not an in-toto v1 Statement with SLSA provenance v1: {}:\n{}",
        doc.display(),
        output_text(&out)
    );
}
