// vop search page: plain JS, no build step. Talks to GET /adapters and POST /search.
"use strict";

const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function loadAdapters() {
  const res = await fetch("/adapters");
  const data = await res.json();
  for (const a of data.adapters) {
    const opt = document.createElement("option");
    opt.value = a.name;
    opt.textContent = `${a.name} (${a.method}, ${a.videos} videos)`;
    opt.selected = a.name === data.default;
    $("adapter").appendChild(opt);
  }
}

function card(hit) {
  const node = $("card-template").content.firstElementChild.cloneNode(true);
  const video = node.querySelector("video");
  video.poster = hit.thumbnail;  // the thumbnail shows until the user presses play
  video.src = hit.video;
  node.querySelector(".rank").textContent = `#${hit.rank}`;
  node.querySelector(".score").textContent = hit.score.toFixed(3);
  node.querySelector(".path").textContent = hit.path;
  node.querySelector(".path").title = hit.path;
  if (hit.warning) {  // e.g. "truncated: 85 of 310 frames": indexed from the frames that exist
    const warning = node.querySelector(".warning");
    warning.textContent = hit.warning;
    warning.hidden = false;
  }
  node.querySelector(".like").addEventListener("click", () => search({ like: hit.id }));
  return node;
}

async function search(body) {
  const request = { ...body, k: Number($("k").value), adapter: $("adapter").value || null };
  setStatus("searching…");
  const started = performance.now();
  let res, data;
  try {
    res = await fetch("/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    data = await res.json();
  } catch (err) {
    setStatus(`request failed: ${err}`, true);
    return;
  }
  if (!res.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail;
    setStatus(`error ${res.status}: ${detail}`, true);
    return;
  }
  const ms = Math.round(performance.now() - started);
  const what = data.query !== null ? `“${data.query}”` : `videos like #${data.like}`;
  setStatus(`${data.results.length} results for ${what} (${data.adapter}, ${ms} ms)`);
  $("results").replaceChildren(...data.results.map(card));
}

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search({ query: $("query").value.trim() });
});

loadAdapters().catch((err) => setStatus(`cannot list adapters: ${err}`, true));
