//! Cycles as text and as a small SVG: the transactions on a circle, each edge an arrow labelled
//! with its type (and key), in Okabe-Ito colours per type.

use super::CycleStep;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn colour(edge: &str) -> &'static str {
    match edge {
        "ww" => "#0072B2",
        "wr" => "#009E73",
        "rw" => "#D55E00",
        "process" => "#CC79A7",
        _ => "#E69F00",
    }
}

/// The cycle as one line per step: `T1 -ww-> T2: T2 appended 5 after T1's 4 to key 3`.
pub(crate) fn cycle_text(steps: &[CycleStep]) -> String {
    steps
        .iter()
        .map(|s| format!("{} -{}-> {}: {}", s.from, s.edge, s.to, s.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A circular node-link drawing of the cycle, `names[i]` the i-th node, `steps[i]` the edge
/// from node i to node i+1 (the last back to the first).
pub(crate) fn cycle_svg(names: &[String], steps: &[CycleStep]) -> String {
    let n = names.len().max(1);
    let r = 70.0 + 18.0 * n as f64;
    let (w, h) = (2.0 * r + 200.0, 2.0 * r + 120.0);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let node_r = 22.0;
    let at = |i: usize| {
        let a = -std::f64::consts::FRAC_PI_2 + 2.0 * std::f64::consts::PI * i as f64 / n as f64;
        (cx + r * a.cos(), cy + r * a.sin())
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    s.push_str("<defs>");
    for e in ["ww", "wr", "rw", "process", "realtime"] {
        s.push_str(&format!(
            "<marker id=\"arrow-{e}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{}\"/></marker>",
            colour(e)
        ));
    }
    s.push_str("</defs>");
    for (i, step) in steps.iter().enumerate() {
        let (x1, y1) = at(i);
        let (x2, y2) = at((i + 1) % n);
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / len, dy / len);
        // Bend each edge outwards so a 2-cycle's two edges do not overlap.
        let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let (ox, oy) = (mx - cx, my - cy);
        let olen = (ox * ox + oy * oy).sqrt();
        let (nx, ny) = if olen > 1.0 {
            (ox / olen, oy / olen)
        } else {
            (uy, -ux)
        };
        let bend = 0.18 * len + 12.0;
        let (qx, qy) = (mx + nx * bend, my + ny * bend);
        let (sx, sy) = (x1 + ux * node_r, y1 + uy * node_r);
        let (ex, ey) = (x2 - ux * node_r, y2 - uy * node_r);
        let c = colour(&step.edge);
        s.push_str(&format!(
            "<path d=\"M{sx:.1},{sy:.1} Q{qx:.1},{qy:.1} {ex:.1},{ey:.1}\" fill=\"none\" \
             stroke=\"{c}\" stroke-width=\"2\" marker-end=\"url(#arrow-{})\"><title>{}</title>\
             </path>",
            esc(&step.edge),
            esc(&step.text)
        ));
        let label = match &step.key {
            Some(k) => format!("{} k={k}", step.edge),
            None => step.edge.clone(),
        };
        let (lx, ly) = (mx + nx * (bend * 0.6 + 6.0), my + ny * (bend * 0.6 + 6.0));
        s.push_str(&format!(
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\" fill=\"{c}\">{}</text>",
            esc(&label)
        ));
    }
    for (i, name) in names.iter().enumerate() {
        let (x, y) = at(i);
        s.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{node_r}\" fill=\"#f4f4f4\" \
             stroke=\"#333\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             font-weight=\"bold\">{}</text>",
            y + 4.0,
            esc(name)
        ));
    }
    s.push_str("</svg>");
    s
}
