#!/usr/bin/env node
// Renders an HTML report of `uatap analyze --html` in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) and prints what a person would see, as JSON:
//
//   node render_check.js REPORT.html SCREENSHOT.png
//   -> {"title": ..., "charts": N, "gaps": [{"missing": "7", "width": w, "height": h, "inside": true}],
//       "verdicts": [...], "timeline_lines": N}
//
// A gap counts as shown when its marker has a non-empty box inside its chart's box.
"use strict";

const path = require("path");
const { chromium } = require("playwright-core");

async function main() {
    const [file, shot] = process.argv.slice(2);
    if (!file || !shot) {
        console.error("usage: render_check.js REPORT.html SCREENSHOT.png");
        process.exit(2);
    }
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        args: [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ],
    });
    try {
        const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
        await page.goto("file://" + path.resolve(file));
        const seen = await page.evaluate(() => {
            const box = (el) => el.getBoundingClientRect();
            const gaps = [...document.querySelectorAll("svg.chart g.gap")].map((g) => {
                const b = box(g);
                const c = box(g.closest("svg"));
                return {
                    missing: g.getAttribute("data-missing"),
                    text: g.textContent,
                    width: b.width,
                    height: b.height,
                    inside: b.left >= c.left && b.right <= c.right + 60 && b.top >= c.top - 20 && b.bottom <= c.bottom,
                };
            });
            return {
                title: document.title,
                charts: document.querySelectorAll("svg.chart").length,
                gaps,
                verdicts: [...document.querySelectorAll(".verdict")].map((v) => v.textContent),
                timeline_lines: document.querySelectorAll("ol.tl li").length,
            };
        });
        await page.screenshot({ path: shot, fullPage: true });
        console.log(JSON.stringify(seen));
    } finally {
        await browser.close();
    }
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
