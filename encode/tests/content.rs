//! The content classifier and paint-over decisions replayed on damage
//! sequences recorded from a real X server (`tests/data/damage-*.txt`,
//! written by `cargo run -p peep-capture --example record_damage`): a
//! separate client typing, scrolling or animating, with idle spells.

use std::time::{Duration, Instant};

use peep_encode::content::{ClassifierConfig, ContentClass, ContentClassifier, PaintOver};

/// One recorded frame: time, changed, damaged fraction (None: unknown).
struct Frame {
    t_ms: u64,
    changed: bool,
    fraction: Option<f32>,
}

fn load(name: &str) -> Vec<Frame> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let size = header.split_whitespace().nth(1).expect("size");
    let (w, h) = size.split_once('x').expect("WxH");
    let area = w.parse::<f32>().expect("width") * h.parse::<f32>().expect("height");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let fraction = match f[2] {
                "full" => None,
                _ => {
                    let n: Vec<f32> = f[2..6].iter().map(|v| v.parse().expect("number")).collect();
                    Some(n[2] * n[3] / area)
                }
            };
            Frame { t_ms: f[0].parse().expect("t"), changed: f[1] == "1", fraction }
        })
        .collect()
}

/// Replays a recording: every frame, plus a tick every 10 ms in between (as
/// the encode loop re-evaluates while no frame comes). Returns the class and
/// refinement decisions over time, one entry per 10 ms.
fn replay(frames: &[Frame], end_ms: u64) -> Vec<(u64, ContentClass, bool)> {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut classifier = ContentClassifier::new(ClassifierConfig::default());
    let mut paint = PaintOver::new(Duration::from_millis(300));
    let mut out = Vec::new();
    let mut next = frames.iter().peekable();
    for ms in (0..end_ms).step_by(10) {
        let mut class = classifier.tick(at(ms));
        while let Some(f) = next.next_if(|f| f.t_ms <= ms) {
            class = classifier.observe(at(f.t_ms), f.changed, f.fraction);
            if f.changed {
                let large = f.fraction.is_some_and(|x| x >= 0.2) || class == ContentClass::Motion;
                paint.changed(at(f.t_ms), large);
            }
        }
        out.push((ms, class, paint.due(at(ms))));
    }
    out
}

fn classes_in(timeline: &[(u64, ContentClass, bool)], from_ms: u64, to_ms: u64) -> Vec<ContentClass> {
    let mut c: Vec<ContentClass> =
        timeline.iter().filter(|(t, _, _)| (from_ms..to_ms).contains(t)).map(|(_, c, _)| *c).collect();
    c.dedup();
    c
}

fn refinements_in(timeline: &[(u64, ContentClass, bool)], from_ms: u64, to_ms: u64) -> Vec<u64> {
    timeline.iter().filter(|(t, _, due)| *due && (from_ms..to_ms).contains(t)).map(|(t, _, _)| *t).collect()
}

/// typing 3 s, moving 3 s, idle 2 s, typing 2 s.
#[test]
fn typing_stays_text_motion_is_recognised_and_ends_with_one_refinement() {
    let frames = load("damage-typing-moving-idle-typing.txt");
    let tl = replay(&frames, 10_000);
    // Typing (small damage) is never motion, whatever the window mapping did.
    assert!(!classes_in(&tl, 0, 3000).contains(&ContentClass::Motion), "{:?}", classes_in(&tl, 0, 3000));
    // Motion is recognised within half a second of the animation starting …
    let first_motion = tl.iter().find(|(_, c, _)| *c == ContentClass::Motion).map(|(t, _, _)| *t).expect("motion");
    assert!((3000..3500).contains(&first_motion), "motion first seen at {first_motion} ms");
    // … and held through the animation without flapping.
    assert_eq!(classes_in(&tl, first_motion, 6000), [ContentClass::Motion]);
    // After it stops: motion holds for a while, then idle, never text.
    assert_eq!(classes_in(&tl, 6100, 8000), [ContentClass::Motion, ContentClass::Idle]);
    // Exactly one refinement after the motion settles, within a second.
    let refine = refinements_in(&tl, 3000, 10_000);
    assert_eq!(refine.len(), 1, "refinements at {refine:?}");
    assert!((6000..7000).contains(&refine[0]), "refined at {} ms", refine[0]);
    // Typing again: text (one full repaint when its window appears is not motion).
    assert!(!classes_in(&tl, 8200, 10_000).contains(&ContentClass::Motion), "{:?}", classes_in(&tl, 8200, 10_000));
}

/// scrolling 3 s, idle 1.5 s, typing 2 s.
#[test]
fn scrolling_is_motion_and_settles_with_one_refinement() {
    let frames = load("damage-scrolling-idle-typing.txt");
    let tl = replay(&frames, 6500);
    let motion: Vec<u64> = tl.iter().filter(|(_, c, _)| *c == ContentClass::Motion).map(|(t, _, _)| *t).collect();
    assert!(motion.first().is_some_and(|&t| t < 600), "scrolling recognised late: {:?}", motion.first());
    assert_eq!(classes_in(&tl, 600, 3000), [ContentClass::Motion]);
    let refine = refinements_in(&tl, 0, 6500);
    assert_eq!(refine.len(), 1, "refinements at {refine:?}");
    assert!((3000..4000).contains(&refine[0]), "refined at {} ms", refine[0]);
    assert!(!classes_in(&tl, 4700, 6500).contains(&ContentClass::Motion));
}

/// Unknown damage (a backend without damage information) is never taken
/// for motion: the classifier stays with screen-content coding.
#[test]
fn unknown_damage_is_not_motion() {
    let t0 = Instant::now();
    let mut c = ContentClassifier::new(ClassifierConfig::default());
    for i in 0..90 {
        assert_ne!(c.observe(t0 + Duration::from_millis(i * 33), true, None), ContentClass::Motion);
    }
    assert_eq!(c.class(), ContentClass::Text);
    assert_eq!(c.tick(t0 + Duration::from_secs(10)), ContentClass::Idle);
}

/// Paint-over: one refinement per settling, none while content keeps
/// changing, none after small changes only.
#[test]
fn paint_over_refines_once_per_settling() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut p = PaintOver::new(Duration::from_millis(300));
    p.changed(ms(0), true);
    assert!(!p.due(ms(100)), "not settled yet");
    p.changed(ms(200), true);
    assert!(!p.due(ms(400)), "still moving");
    assert_eq!(p.deadline(), Some(ms(500)));
    assert!(p.due(ms(500)));
    assert!(!p.due(ms(600)) && !p.due(ms(5000)), "then nothing");
    assert_eq!(p.deadline(), None);
    p.changed(ms(6000), false);
    assert!(!p.due(ms(7000)), "small changes need no refinement");
    p.changed(ms(8000), true);
    assert!(p.due(ms(8300)));
}
