//! Plans built from Dockerfile text alone: no files, no registry.

use super::*;

fn plan_with(text: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Plan> {
    let df = crate::dockerfile::parse("Dockerfile", text)?;
    Plan::new(
        df,
        PlanInput {
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: target.map(String::from),
            platform: Some(Platform::parse("linux/arm64").map_err(|e| anyhow!(e))?),
            label_prefix: String::new(),
            named: vec![],
        },
    )
}

fn plan(text: &str) -> Plan {
    match plan_with(text, &[], None) {
        Ok(p) => p,
        Err(e) => panic!("plan failed: {e:#}"),
    }
}

fn err(text: &str, args: &[(&str, &str)], target: Option<&str>) -> String {
    match plan_with(text, args, target) {
        Ok(_) => panic!("expected an error for {text:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// The first variable of each ARG of the first stage.
fn first_args(p: &Plan) -> Vec<KeyValue> {
    p.stages[0]
        .steps
        .iter()
        .filter_map(|s| match &s.ins.command {
            Command::Arg(k) => Some(k[0].clone()),
            _ => None,
        })
        .collect()
}

fn image(p: &Plan, idx: usize) -> String {
    match p.base(idx) {
        Ok(Base::Image(_, name)) => name,
        other => panic!("stage {idx}: expected an image, got {other:?}"),
    }
}

#[test]
fn steps_are_classified() {
    let p = plan(
        "FROM a\nARG X\nENV A=1\nRUN true\nCOPY . /\nADD x /y\nUSER 1\nLABEL a=b\nWORKDIR /w\n",
    );
    let kinds: Vec<StepKind> = p.stages[0].steps.iter().map(|s| s.kind).collect();
    use StepKind::*;
    assert_eq!(
        kinds,
        [Arg, Config, Layer, Layer, Layer, Config, Config, Workdir]
    );
}

#[test]
fn meta_args_take_build_args_and_defaults() {
    let text = "ARG A=one\nARG B=${A}-two\nARG C\nFROM img:${B}\nFROM img:${C:-none}\n";
    let p = plan(text);
    assert_eq!(image(&p, 0), "img:one-two");
    assert_eq!(image(&p, 1), "img:none");
    let p = plan_with(text, &[("A", "x"), ("C", "c1"), ("C", "c2")], None).unwrap();
    assert_eq!(
        image(&p, 0),
        "img:x-two",
        "a later meta default sees the build arg"
    );
    assert_eq!(
        image(&p, 1),
        "img:c2",
        "the last --build-arg of a name wins"
    );
}

#[test]
fn meta_args_are_not_in_stage_scope_until_redeclared() {
    let p = plan("ARG V=meta\nFROM a\nARG V\nARG W=${V}-w\nARG U\n");
    let vars = Vars::new();
    let kvs = first_args(&p);
    // ARG V takes the meta value as its default.
    assert_eq!(
        p.stage_arg(3, &kvs[0], &vars).unwrap(),
        (Some("meta".into()), false)
    );
    // A default expands with the stage's variables only: V is not in `vars` yet.
    assert_eq!(
        p.stage_arg(4, &kvs[1], &vars).unwrap(),
        (Some("-w".into()), false)
    );
    let mut with_v = Vars::new();
    with_v.insert("V".into(), "meta".into());
    assert_eq!(
        p.stage_arg(4, &kvs[1], &with_v).unwrap(),
        (Some("meta-w".into()), false)
    );
    assert_eq!(p.stage_arg(5, &kvs[2], &vars).unwrap(), (None, false));
}

#[test]
fn stage_args_prefer_build_args_and_mark_them_used() {
    let p = plan_with(
        "FROM a\nARG V=default\n",
        &[("V", "given"), ("NOPE", "1")],
        None,
    )
    .unwrap();
    let Command::Arg(kvs) = &p.stages[0].steps[0].ins.command else {
        panic!("not an ARG")
    };
    assert_eq!(
        p.stage_arg(2, &kvs[0], &Vars::new()).unwrap(),
        (Some("given".into()), true)
    );
    let used: std::collections::HashSet<String> = ["V".to_string()].into();
    assert_eq!(p.unused_build_args(&used), ["NOPE"]);
}

#[test]
fn a_meta_arg_consumes_its_build_arg() {
    let p = plan_with(
        "ARG REGISTRY\nFROM ${REGISTRY}/a\n",
        &[("REGISTRY", "r.example"), ("NOPE", "1")],
        None,
    )
    .unwrap();
    assert_eq!(p.unused_build_args(&Default::default()), ["NOPE"]);
}

#[test]
fn automatic_platform_args() {
    let p = plan("FROM img:$TARGETARCH\nARG TARGETOS\nARG TARGETARCH=override\n");
    assert_eq!(image(&p, 0), "img:arm64");
    let args = first_args(&p);
    assert_eq!(
        p.stage_arg(2, &args[0], &Vars::new()).unwrap().0.as_deref(),
        Some("linux")
    );
    assert_eq!(
        p.stage_arg(3, &args[1], &Vars::new()).unwrap().0.as_deref(),
        Some("override")
    );
    // A meta ARG overrides the automatic value in FROM.
    let p = plan("ARG TARGETARCH=riscv64\nFROM img:$TARGETARCH\n");
    assert_eq!(image(&p, 0), "img:riscv64");
}

#[test]
fn bases_scratch_stages_and_images() {
    let p = plan("FROM scratch AS a\nFROM a AS b\nFROM 0\nFROM SCRATCH\nFROM c\nFROM b\n");
    assert_eq!(p.base(0).unwrap(), Base::Scratch);
    assert_eq!(p.base(1).unwrap(), Base::Stage(0));
    assert_eq!(p.base(2).unwrap(), Base::Stage(0));
    assert_eq!(p.base(3).unwrap(), Base::Scratch);
    assert_eq!(image(&p, 4), "c");
    assert_eq!(p.base(5).unwrap(), Base::Stage(1));
}

#[test]
fn a_stage_cannot_be_its_own_or_a_later_base() {
    // `FROM b` in stage 0 names no earlier stage: it is an image called b.
    let p = plan("FROM b AS a\nFROM a AS b\n");
    assert_eq!(image(&p, 0), "b");
    assert!(p.stage_index("b", 1).is_none());
    assert!(
        p.stage_index("A", 1).is_some(),
        "stage names match case-insensitively"
    );
    let e = p.not_a_stage(0, 1, "b").map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("Dockerfile:1: --from=b: stage \"b\" is defined after this one")
    );
    let e = p.not_a_stage(1, 2, "7").map(|e| e.to_string());
    assert!(e.unwrap().contains("no earlier stage with index 7"));
    assert!(p.not_a_stage(1, 2, "alpine:3").is_none());
}

#[test]
fn bad_bases_name_the_line() {
    let p = plan("FROM a\nARG X\nFROM ${EMPTY}\n");
    let e = format!("{:#}", p.base(1).unwrap_err());
    assert!(
        e.starts_with("Dockerfile:3: FROM ${EMPTY}: the image name is empty"),
        "{e}"
    );
    let p = plan("FROM a\nFROM Not/Valid:Ref\n");
    assert!(format!("{:#}", p.base(1).unwrap_err()).starts_with("Dockerfile:2: "));
    let p = plan("FROM --platform=linux/$NOPE a\n");
    assert!(format!("{:#}", p.stage_platform(0).unwrap_err()).starts_with("Dockerfile:1: "));
    let p = plan("FROM --platform=$BUILDPLATFORM a\nFROM b\n");
    assert_eq!(p.stage_platform(0).unwrap(), Platform::host());
    assert_eq!(p.stage_platform(1).unwrap().arch, "arm64");
}

#[test]
fn structure_errors() {
    assert!(err("RUN x\nFROM a\n", &[], None)
        .starts_with("Dockerfile:1: RUN before the first FROM (only ARG may come first)"));
    assert!(err("ARG A\n", &[], None).contains("no FROM instruction"));
    assert!(err("FROM a AS x\nFROM b AS X\n", &[], None)
        .starts_with("Dockerfile:2: duplicate stage name \"x\""));
    let e = err("FROM a AS one\nFROM b AS two\n", &[], Some("three"));
    assert!(
        e.contains("--target \"three\"") && e.contains("one, two"),
        "{e}"
    );
    let e = err("FROM a\n", &[], Some("x"));
    assert!(e.contains("none are named"), "{e}");
}

#[test]
fn target_defaults_to_the_last_stage() {
    assert_eq!(plan("FROM a\nFROM b AS x\nFROM c\n").target, 2);
    let p = plan_with("FROM a\nFROM b AS x\nFROM c\n", &[], Some("X")).unwrap();
    assert_eq!(p.target, 1);
}

#[test]
fn order_prunes_to_what_the_target_needs() {
    let text = "\
ARG SRC=tools
FROM alpine AS tools
FROM alpine AS unused
RUN false
FROM tools AS base
FROM scratch AS lib
FROM base AS final
COPY --from=lib /a /a
COPY --from=${SRC} /b /b
COPY --from=alpine:3 /c /c
COPY --from=$STAGE_VAR /d /d
";
    let p = plan(text);
    assert_eq!(p.target, 4);
    // `--from=${SRC}` needs the stage's variables: resolved when prepared.
    assert_eq!(p.deps(4), [2, 3]);
    assert_eq!(p.order(&[p.target]), [0, 2, 3, 4]);
    let all: Vec<usize> = (0..p.stages.len()).collect();
    assert_eq!(p.order(&all), [0, 1, 2, 3, 4]);
    let p = plan_with(text, &[], Some("base")).unwrap();
    assert_eq!(p.order(&[p.target]), [0, 2]);
}

#[test]
fn a_stage_read_by_one_other_passes_its_rootfs_on() {
    let text = "FROM a AS base\nRUN x\nFROM base AS app\nRUN y\nFROM base AS worker\nRUN z\n";
    let p = plan_with(text, &[], Some("app")).unwrap();
    // worker is not built for app: app is base's only reader.
    assert!(p.sole_reader(0, 1, 1));
    let p = plan_with(text, &[], Some("worker")).unwrap();
    assert!(p.sole_reader(0, 2, 2));
    assert!(!p.sole_reader(0, 1, 2), "app is not built for worker");
    // Two readers: base must keep its rootfs (or be extracted again).
    let text2 = format!("{text}FROM scratch\nCOPY --from=app /a /a\nCOPY --from=worker /b /b\n");
    let p = plan(&text2);
    assert!(!p.sole_reader(0, 1, 3));
    assert!(p.sole_reader(1, 3, 3));
    // COPY --from a stage counts as reading it.
    let p = plan("FROM a AS base\nFROM base AS app\nFROM scratch\nCOPY --from=base /a /a\n");
    assert!(!p.sole_reader(0, 1, 2));
    // The target keeps its rootfs; a variable --from or a RUN --mount from= could read anything.
    let p = plan("FROM a AS base\nFROM base AS app\nARG S=base\nCOPY --from=$S /a /a\n");
    assert!(!p.sole_reader(0, 1, 1));
    let p =
        plan("FROM a AS base\nFROM base AS app\nRUN --mount=type=bind,from=base,target=/m true\n");
    assert!(!p.sole_reader(0, 1, 1));
    let p = plan("FROM a AS base\nFROM base AS app\nRUN --mount=type=cache,target=/c true\n");
    assert!(p.sole_reader(0, 1, 1));
}

#[test]
fn onbuild_triggers_become_steps_at_the_from_line() {
    let p = plan("FROM a\nFROM b\n");
    let steps = p
        .triggers(1, &["RUN echo hi".into(), "ENV A=1".into()])
        .unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].kind, StepKind::Layer);
    assert_eq!(steps[0].ins.line, 2);
    assert_eq!(steps[1].kind, StepKind::Config);
    let e = format!("{:#}", p.triggers(1, &["FROM x".into()]).unwrap_err());
    assert!(
        e.starts_with("Dockerfile:2: ONBUILD FROM x: FROM inside a stage"),
        "{e}"
    );
}

#[test]
fn labels() {
    let p = plan("FROM a\nFROM b AS named\n");
    assert_eq!(p.label(0, 1, 3), "stage-0 1/3");
    assert_eq!(p.label(1, 2, 2), "named 2/2");
}
