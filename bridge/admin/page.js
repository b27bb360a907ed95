"use strict";
// What the dashboard and the settings page share: the token's key, building
// elements, messages, dates, calls to the API and filling a table. Each page
// defines showLogin(), which api() calls when the token is refused.
const KEY = "hookbridge.token";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") node.addEventListener("click", v); else node.setAttribute(k, v);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? "–"));
  }
  return node;
}

function say(text) { document.getElementById("message").textContent = text; }

function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }

async function api(path, options) {
  const token = sessionStorage.getItem(KEY);
  const headers = { "Authorization": "Bearer " + token, "Content-Type": "application/json", ...((options || {}).headers || {}) };
  const response = await fetch(path, { ...(options || {}), headers });
  if (response.status === 401) { sessionStorage.removeItem(KEY); showLogin("The token was refused."); throw new Error("401"); }
  if (response.status === 204) return null;
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function fill(id, rows, empty) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const cols = document.querySelectorAll(`#${id} thead th`).length;
    body.append(el("tr", {}, el("td", { colspan: cols, class: "empty" }, empty)));
  }
}
