//! CycloneDX 1.6 JSON: the image as `metadata.component` (`container`), the
//! distribution as an `operating-system` component, one `library` component per
//! scanner finding (purl, licence as an SPDX id or expression where it is one,
//! else by name), and kiln's properties saying which metadata file, layer and
//! Dockerfile line each came from. The metadata carries GitLab's container
//! scanning properties, so that GitLab's dependency list can read the file
//! (`artifacts:reports:cyclonedx`).

use super::Input;
use crate::attest::license;
use crate::digest::sha256_bytes;
use anyhow::{anyhow, Result};
use serde_cyclonedx::cyclonedx::v_1_6 as cdx;

fn prop(name: &str, value: impl Into<String>) -> Result<cdx::Property> {
    cdx::PropertyBuilder::default()
        .name(name)
        .value(value.into())
        .build()
        .map_err(|e| anyhow!("CycloneDX property: {e}"))
}

fn licenses(raw: &str) -> Result<Option<cdx::LicenseChoice>> {
    let one = |l: cdx::License| {
        cdx::LicenseChoiceUrl::Variant0(vec![cdx::LicenseChoiceUrlVariant0ItemUrl { license: l }])
    };
    let Some(d) = license::read(raw) else {
        return Ok(None);
    };
    let e = |e: &dyn std::fmt::Display| anyhow!("CycloneDX licence: {e}");
    Ok(Some(if let Some(id) = d.single_id() {
        one(cdx::LicenseBuilder::default()
            .id(id)
            .build()
            .map_err(|x| e(&x))?)
    } else if d.refs.len() == 1 && d.expression == d.refs[0].0 {
        // One name kiln cannot map: by name, as the metadata says it.
        one(cdx::LicenseBuilder::default()
            .name(raw.trim())
            .build()
            .map_err(|x| e(&x))?)
    } else {
        cdx::LicenseChoiceUrl::Variant1(vec![
            cdx::LicenseChoiceUrlVariant1ItemLicenseBuilder::default()
                .expression(d.expression)
                .build()
                .map_err(|x| e(&x))?,
        ])
    }))
}

/// A serial number that is the same for the same image and platform
/// (RFC 4122 layout, version 8: derived, not random).
fn serial(input: &Input<'_>) -> String {
    let h = sha256_bytes(
        format!(
            "kiln cyclonedx {} {}",
            input.subject.digest, input.subject.platform
        )
        .as_bytes(),
    );
    let hex = h.trim_start_matches("sha256:");
    format!(
        "urn:uuid:{}-{}-8{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        // variant 10xx
        ["8", "9", "a", "b"][usize::from_str_radix(&hex[16..17], 16).unwrap_or(0) % 4],
        &hex[17..20],
        &hex[20..32]
    )
}

pub fn document(input: &Input<'_>) -> Result<cdx::CycloneDx> {
    let s = input.subject;
    let err = |e: &dyn std::fmt::Display| anyhow!("CycloneDX: {e}");
    let mut image = cdx::ComponentBuilder::default();
    image
        .type_("container")
        .bom_ref("image")
        .name(s.name.as_str())
        .version(s.digest.as_str())
        .properties(vec![prop("kiln:platform", s.platform.as_str())?]);
    if let Some(p) = input.image_purl() {
        image.purl(p);
    }
    let tool = cdx::ComponentBuilder::default()
        .type_("application")
        .name("kiln")
        .version(s.tool_version.as_str())
        .build()
        .map_err(|e| err(&e))?;
    let mut meta_props = vec![
        prop("gitlab:meta:schema_version", "1")?,
        prop("gitlab:container_scanning:image:name", s.name.as_str())?,
    ];
    if let Some(t) = &s.tag {
        meta_props.push(prop("gitlab:container_scanning:image:tag", t.as_str())?);
    }
    let mut components = Vec::new();
    if let Some(os) = &input.inventory.os {
        meta_props.push(prop(
            "gitlab:container_scanning:operating_system:name",
            os.id.as_str(),
        )?);
        meta_props.push(prop(
            "gitlab:container_scanning:operating_system:version",
            os.version_id.as_str(),
        )?);
        let mut c = cdx::ComponentBuilder::default();
        c.type_("operating-system")
            .bom_ref("os")
            .name(os.id.as_str())
            .version(os.version_id.as_str());
        if !os.pretty_name.is_empty() {
            c.description(os.pretty_name.as_str());
        }
        components.push(c.build().map_err(|e| err(&e))?);
    }
    let metadata = cdx::MetadataBuilder::default()
        .timestamp(s.created.as_str())
        .tools(cdx::MetadataTools::Variant0(
            cdx::MetadataToolsVariant0Builder::default()
                .components(vec![tool])
                .build()
                .map_err(|e| err(&e))?,
        ))
        .component(image.build().map_err(|e| err(&e))?)
        .properties(meta_props)
        .build()
        .map_err(|e| err(&e))?;
    let mut refs = Vec::new();
    for (i, p) in input.inventory.packages.iter().enumerate() {
        let r = format!("{}-{}", p.found.ecosystem.purl_type(), i + 1);
        let mut props = vec![
            prop("kiln:path", format!("/{}", p.path))?,
            prop("kiln:layer", (p.layer + 1).to_string())?,
        ];
        if let Some(l) = input.layers.get(p.layer) {
            props.push(prop("kiln:layer:diffID", l.diff_id.as_str())?);
            if let Some(line) = l.line {
                props.push(prop(
                    "kiln:dockerfile:line",
                    format!("{}:{line}", input.dockerfile),
                )?);
            }
            if let Some(ins) = &l.instruction {
                props.push(prop("kiln:dockerfile:instruction", ins.as_str())?);
            }
        }
        let mut c = cdx::ComponentBuilder::default();
        c.type_("library")
            .bom_ref(r.as_str())
            .name(p.found.name.as_str())
            .version(p.found.version.as_str())
            .properties(props);
        if let Some(g) = p.found.group() {
            c.group(g);
        }
        if let Some(purl) = input.purl(p) {
            c.purl(purl);
        }
        if let Some(l) = licenses(p.found.license.as_deref().unwrap_or(""))? {
            c.licenses(l);
        }
        components.push(c.build().map_err(|e| err(&e))?);
        refs.push(r);
    }
    let deps = vec![cdx::DependencyBuilder::default()
        .ref_("image")
        .depends_on(refs)
        .build()
        .map_err(|e| err(&e))?];
    cdx::CycloneDxBuilder::default()
        .schema("http://cyclonedx.org/schema/bom-1.6.schema.json")
        .bom_format("CycloneDX")
        .spec_version("1.6")
        .serial_number(serial(input))
        .version(1)
        .metadata(metadata)
        .components(components)
        .dependencies(deps)
        .build()
        .map_err(|e| err(&e))
}

/// The document as JSON bytes (pretty, with a final newline).
pub fn write(input: &Input<'_>) -> Result<Vec<u8>> {
    super::pretty(&document(input)?)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;

    #[test]
    fn components_licences_properties_and_gitlab_metadata() {
        let owned = fixture::owned();
        let input = owned.input();
        let bytes = super::write(&input).unwrap();
        assert_eq!(bytes, super::write(&input).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["specVersion"], "1.6");
        let serial = v["serialNumber"].as_str().unwrap();
        assert!(
            regex::Regex::new(
                "^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
            )
            .unwrap()
            .is_match(serial),
            "{serial}"
        );
        assert_eq!(v["metadata"]["component"]["type"], "container");
        let props = v["metadata"]["properties"].as_array().unwrap();
        assert!(props.iter().any(|p| p["name"]
            == "gitlab:container_scanning:operating_system:name"
            && p["value"] == "debian"));
        let comps = v["components"].as_array().unwrap();
        assert_eq!(comps[0]["type"], "operating-system");
        let find = |n: &str| comps.iter().find(|c| c["name"] == n).unwrap();
        assert_eq!(
            find("requests")["licenses"][0]["license"]["id"],
            "Apache-2.0"
        );
        assert_eq!(find("node")["group"], "@types");
        assert_eq!(
            find("node")["licenses"][0]["license"]["name"],
            "see LICENSE"
        );
        let line = find("requests")["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "kiln:dockerfile:line")
            .unwrap()["value"]
            .clone();
        assert_eq!(line, "Dockerfile:3");
        assert_eq!(
            v["dependencies"][0]["dependsOn"].as_array().unwrap().len(),
            3
        );
    }
}
