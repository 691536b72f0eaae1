//! SPDX 2.3 JSON: the image as the described package (`CONTAINER`), which
//! `CONTAINS` one package per scanner finding, each with its purl, its
//! declared licence where it is an SPDX expression (else `NOASSERTION`, the
//! text in `licenseComments`) and, in `sourceInfo`, the metadata file, layer
//! and Dockerfile line it came from.

use super::Input;
use crate::attest::license;
use anyhow::{anyhow, Result};
use serde_spdx::spdx::v_2_3::{
    Spdx, SpdxBuilder, SpdxCreationInfoBuilder, SpdxItemHasExtractedLicensingInfos,
    SpdxItemHasExtractedLicensingInfosBuilder, SpdxItemPackages, SpdxItemPackagesBuilder,
    SpdxItemPackagesItemExternalRefsBuilder, SpdxItemRelationships, SpdxItemRelationshipsBuilder,
};

const NOASSERTION: &str = "NOASSERTION";

fn relationship(from: &str, kind: &str, to: &str) -> Result<SpdxItemRelationships> {
    SpdxItemRelationshipsBuilder::default()
        .spdx_element_id(from)
        .relationship_type(kind)
        .related_spdx_element(to)
        .build()
        .map_err(|e| anyhow!("SPDX relationship: {e}"))
}

fn purl_ref(purl: String) -> Result<serde_spdx::spdx::v_2_3::SpdxItemPackagesItemExternalRefs> {
    SpdxItemPackagesItemExternalRefsBuilder::default()
        .reference_category("PACKAGE-MANAGER")
        .reference_type("purl")
        .reference_locator(purl)
        .build()
        .map_err(|e| anyhow!("SPDX external ref: {e}"))
}

pub fn document(input: &Input<'_>) -> Result<Spdx> {
    let s = input.subject;
    let image_id = "SPDXRef-Image";
    let mut image = SpdxItemPackagesBuilder::default();
    image
        .spdxid(image_id)
        .name(s.name.as_str())
        .version_info(s.digest.as_str())
        .download_location(NOASSERTION)
        .files_analyzed(false)
        .license_concluded(NOASSERTION)
        .license_declared(NOASSERTION)
        .copyright_text(NOASSERTION)
        .primary_package_purpose("CONTAINER")
        .comment(format!("platform {}", s.platform));
    if let Some(p) = input.image_purl() {
        image.external_refs(vec![purl_ref(p)?]);
    }
    let mut packages: Vec<SpdxItemPackages> =
        vec![image.build().map_err(|e| anyhow!("SPDX package: {e}"))?];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", image_id)?];
    let mut refs: std::collections::BTreeMap<String, String> = Default::default();
    for (i, p) in input.inventory.packages.iter().enumerate() {
        let id = format!(
            "SPDXRef-Package-{}-{}",
            p.found.ecosystem.purl_type(),
            i + 1
        );
        let name = p.found.full_name();
        let mut b = SpdxItemPackagesBuilder::default();
        b.spdxid(id.as_str())
            .name(name)
            .version_info(p.found.version.as_str())
            .download_location(NOASSERTION)
            .files_analyzed(false)
            .license_concluded(NOASSERTION)
            .copyright_text(NOASSERTION)
            .source_info(input.origin(p));
        let raw = p.found.license.as_deref().unwrap_or("");
        match license::read(raw) {
            Some(d) => {
                if d.expression != raw {
                    b.license_comments(format!("declared as: {}", crate::clip::clip_to(raw, 1000)));
                }
                b.license_declared(d.expression);
                for (id, name) in d.refs {
                    refs.entry(id).or_insert(name);
                }
            }
            None => {
                b.license_declared(NOASSERTION);
            }
        }
        if let Some(purl) = input.purl(p) {
            b.external_refs(vec![purl_ref(purl)?]);
        }
        packages.push(b.build().map_err(|e| anyhow!("SPDX package: {e}"))?);
        relationships.push(relationship(image_id, "CONTAINS", &id)?);
    }
    let creation = SpdxCreationInfoBuilder::default()
        .created(s.created.as_str())
        .creators(vec![format!("Tool: kiln-{}", s.tool_version)])
        .build()
        .map_err(|e| anyhow!("SPDX creation info: {e}"))?;
    let extracted: Vec<SpdxItemHasExtractedLicensingInfos> = refs
        .into_iter()
        .map(|(id, name)| {
            SpdxItemHasExtractedLicensingInfosBuilder::default()
                .license_id(id)
                .name(name.as_str())
                .extracted_text(format!(
                    "The licence the package's metadata names \"{name}\"."
                ))
                .comment("kiln maps a declared licence to an SPDX id only where the name is exact")
                .build()
                .map_err(|e| anyhow!("SPDX licence reference: {e}"))
        })
        .collect::<Result<_>>()?;
    let mut doc = SpdxBuilder::default();
    if !extracted.is_empty() {
        doc.has_extracted_licensing_infos(extracted);
    }
    doc.spdxid("SPDXRef-DOCUMENT")
        .spdx_version("SPDX-2.3")
        .data_license("CC0-1.0")
        .name(format!("{}@{}", s.name, s.digest))
        .document_namespace(format!(
            "https://gitlab.com/kiln/kiln/spdx/{}/{}/{}",
            s.name.replace(['@', ':'], "-"),
            s.platform,
            s.digest.replace(':', "-")
        ))
        .creation_info(creation)
        .packages(packages)
        .relationships(relationships)
        .build()
        .map_err(|e| anyhow!("SPDX document: {e}"))
}

/// The document as JSON bytes (pretty, with a final newline).
pub fn write(input: &Input<'_>) -> Result<Vec<u8>> {
    super::pretty(&document(input)?)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;

    #[test]
    fn packages_purls_licences_and_origins() {
        let owned = fixture::owned();
        let input = owned.input();
        let bytes = super::write(&input).unwrap();
        assert_eq!(
            bytes,
            super::write(&input).unwrap(),
            "the same input gives the same bytes"
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        assert_eq!(v["creationInfo"]["created"], "2026-12-07T00:00:00Z");
        let pkgs = v["packages"].as_array().unwrap();
        assert_eq!(pkgs.len(), 4);
        assert_eq!(pkgs[0]["primaryPackagePurpose"], "CONTAINER");
        let by_name = |n: &str| pkgs.iter().find(|p| p["name"] == n).unwrap();
        let libc = by_name("libc6");
        assert_eq!(
            libc["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12"
        );
        assert_eq!(libc["licenseDeclared"], "NOASSERTION");
        let req = by_name("requests");
        assert_eq!(req["licenseDeclared"], "Apache-2.0");
        assert_eq!(req["licenseComments"], "declared as: Apache 2.0");
        let src = req["sourceInfo"].as_str().unwrap();
        assert!(
            src.contains("layer 2 (sha256:bb), Dockerfile:3 RUN pip install requests"),
            "{src}"
        );
        let node = by_name("@types/node");
        assert_eq!(node["licenseDeclared"], "LicenseRef-see-LICENSE");
        assert_eq!(node["licenseComments"], "declared as: see LICENSE");
        let refs = v["hasExtractedLicensingInfos"].as_array().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0]["licenseId"], "LicenseRef-see-LICENSE");
        assert_eq!(refs[0]["name"], "see LICENSE");
        let rels = v["relationships"].as_array().unwrap();
        assert_eq!(rels.len(), 4);
        assert_eq!(rels[0]["relationshipType"], "DESCRIBES");
    }
}
