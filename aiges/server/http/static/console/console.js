// The aiges web console: a form built from the service's declared fields (/console/service.json),
// one-shot calls on the ASE JSON API, sessions over its WebSocket, the same call as commands to
// copy (/console/snippets), and a live panel (/console/status.json). Preact + htm, vendored.
// With several services each has its page (/console?service=NAME); every request names it.
import { h, render } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import htm from "htm";
import {
  audioBlob, fromBase64, mimeOf, recordPcm, recordingPossible, toBase64, utf8, wav,
} from "./media.js";

const html = htm.bind(h);
const CHOSEN = new URLSearchParams(window.location.search).get("service") || "";
const forService = (name) => (name ? `?service=${encodeURIComponent(name)}` : "");
const STATUS_POLL_MS = 2000;
const RAW_STRING_LIMIT = 120;
const IMAGE_ENCODINGS = { png: "png", jpg: "jpg", jpeg: "jpg", bmp: "bmp", gif: "gif", webp: "webp" };

// -- building requests ----------------------------------------------------------------------------

function paramValue(param, raw) {
  if (raw === undefined || raw === null || raw === "") return undefined;
  if (param.type === "boolean") return Boolean(raw);
  if (param.type === "integer" || param.type === "number") {
    const number = Number(raw);
    return Number.isNaN(number) ? raw : number;
  }
  return String(raw);
}

function initialParams(service) {
  const values = {};
  for (const param of service.params) {
    if (param.default !== undefined) values[param.name] = param.default;
    else if (param.control === "switch") values[param.name] = false;
    else values[param.name] = "";
  }
  return values;
}

function initialInputs(service) {
  if (service.inputs.length) {
    return service.inputs.map((field) => ({ ...field, declared: true, text: "", bytes: null, file: null }));
  }
  return [freeInput("text")];
}

function freeInput(name) {
  return {
    name, type: "text", declared: false, required: false, attributes: {},
    chunk_bytes: 4096, interval_ms: 40, text: "", bytes: null, file: null,
  };
}

/** The bytes an input holds: the typed text, or the chosen (or recorded) file. */
function inputBytes(input) {
  if (input.type === "text" && !input.bytes) return input.text ? utf8.encode(input.text) : null;
  return input.bytes;
}

function payloadEntry(input, bytes, status) {
  const entry = { [input.type]: toBase64(bytes), status };
  for (const [key, value] of Object.entries(input.attributes || {})) entry[key] = value;
  if (input.type === "image" && input.file) {
    const extension = input.file.split(".").pop().toLowerCase();
    if (IMAGE_ENCODINGS[extension]) entry.encoding = IMAGE_ENCODINGS[extension];
  }
  return entry;
}

/** The head of a call (a one-shot's, a session's first frame): header, params and, as objects
 * among them, the outputs asked for that the wrapper does not declare (ASE JSON's expect list). */
function requestHead(service, params, extraParams, extraOutputs) {
  const parameter = {};
  for (const param of service.params) {
    const value = paramValue(param, params[param.name]);
    if (value !== undefined) parameter[param.name] = value;
  }
  for (const { key, value } of extraParams) if (key) parameter[key] = value;
  for (const { name, type } of extraOutputs) if (name) parameter[name] = { data_type: type };
  return { header: { app_id: "console" }, parameter: { [service.service]: parameter } };
}

function onceRequest(service, params, extraParams, extraOutputs, inputs) {
  const request = { ...requestHead(service, params, extraParams, extraOutputs), payload: {} };
  for (const input of inputs) {
    const bytes = inputBytes(input);
    if (bytes && input.name) request.payload[input.name] = payloadEntry(input, bytes, 3);
  }
  return request;
}

function fileNames(inputs) {
  const files = {};
  for (const input of inputs) if (input.file && input.name) files[input.name] = input.file;
  return files;
}

/** A copy for display: long strings (base64) shortened. */
function shortened(value) {
  if (typeof value === "string" && value.length > RAW_STRING_LIMIT) {
    return `${value.slice(0, RAW_STRING_LIMIT)}… (${value.length} chars)`;
  }
  if (Array.isArray(value)) return value.map(shortened);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shortened(v)]));
  }
  return value;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function copyText(text, fallbackElement) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackElement) {
      const range = document.createRange();
      range.selectNodeContents(fallbackElement);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    return false;
  }
}

// -- small views ----------------------------------------------------------------------------------

function useObjectUrl(blob) {
  const url = useMemo(() => (blob ? URL.createObjectURL(blob) : null), [blob]);
  useEffect(() => () => url && URL.revokeObjectURL(url), [url]);
  return url;
}

function preview(value) {
  const text = JSON.stringify(value);
  return text.length > 90 ? `${text.slice(0, 90)}…` : text;
}

/** A JSON value as a tree of <details>: levels below `open` start collapsed, with a preview. */
function JsonView({ value, name, depth = 0, open = 2 }) {
  const label = name !== undefined ? html`<span class="json-key">${name}</span>: ` : null;
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const expanded = depth < open;
    return html`<details class="json" open=${expanded}>
      <summary>${label}<span class="json-size">${Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`}</span>
        <span class="json-preview"> ${preview(value)}</span></summary>
      <div class="json-body">
        ${entries.map(([k, v]) => html`<${JsonView} key=${k} name=${k} value=${v} depth=${depth + 1} open=${open} />`)}
      </div>
    </details>`;
  }
  return html`<div class="json-leaf">${label}<span class=${`json-${value === null ? "null" : typeof value}`}
    >${JSON.stringify(value)}</span></div>`;
}

function parsedJson(text, declaredFormat) {
  const looksJson = /^\s*[[{]/.test(text);
  if (declaredFormat !== "json" && !looksJson) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function Media({ kind, blob }) {
  const url = useObjectUrl(blob);
  if (!url) return null;
  if (kind === "image") return html`<img class="preview" src=${url} alt="image" />`;
  if (kind === "audio") return html`<audio class="player" controls src=${url}></audio>`;
  return html`<video class="player" controls src=${url}></video>`;
}

/** One output item of an ASE JSON response, shown by its type. */
function OutputItem({ name, entry, declared, open = 2 }) {
  const type = ["text", "image", "audio", "video", "other"].find((key) => key in entry) || "other";
  const attributes = { ...((declared && declared.attributes) || {}), ...entry };
  const raw = entry[type];
  let body;
  if (type === "text" && !entry.base64) {
    const json = typeof raw === "string" ? parsedJson(raw, attributes.format) : raw;
    body = json !== undefined ? html`<${JsonView} value=${json} open=${open} />` : html`<pre class="text">${raw}</pre>`;
  } else {
    const bytes = fromBase64(raw || "");
    if (type === "image" || type === "video") {
      body = html`<${Media} kind=${type} blob=${new Blob([bytes], { type: mimeOf(bytes, type, attributes.encoding) })} />`;
    } else if (type === "audio") {
      body = html`<${Media} kind="audio" blob=${audioBlob(bytes, attributes)} />`;
    } else {
      body = html`<${Download} bytes=${bytes} name=${`${name}.bin`} />`;
    }
  }
  return html`<div class="output" data-output=${name}>
    <div class="output-head"><span class="name">${name}</span> <span class="type">${type}</span>
      ${entry.status !== undefined ? html` <span class="type">status ${entry.status}</span>` : null}</div>
    ${body}
  </div>`;
}

function Download({ bytes, name }) {
  const url = useObjectUrl(useMemo(() => new Blob([bytes]), [bytes]));
  return html`<p class="download">${bytes.length} bytes <a href=${url} download=${name}>save as ${name}</a></p>`;
}

function Outputs({ response, outputs, open = 2 }) {
  const payload = (response && response.payload) || {};
  const declared = Object.fromEntries(outputs.map((o) => [o.name, o]));
  const names = Object.keys(payload);
  if (!names.length) return html`<p class="muted">No output items.</p>`;
  return names.map((name) => html`<${OutputItem} key=${name} name=${name} entry=${payload[name]}
    declared=${declared[name]} open=${open} />`);
}

function Failure({ header, httpStatus }) {
  return html`<div class="failure" id="failure">
    <span class="code" id="result-code">${header.code}</span>
    <span class="message" id="result-message">${header.message}</span>
    ${httpStatus ? html`<span class="muted"> HTTP ${httpStatus}</span>` : null}
  </div>`;
}

function Raw({ request, response }) {
  return html`<div class="raw">
    <details id="raw-request"><summary>Raw request</summary>
      <pre>${JSON.stringify(shortened(request), null, 2)}</pre></details>
    <details id="raw-response"><summary>Raw response</summary>
      <pre>${JSON.stringify(shortened(response), null, 2)}</pre></details>
  </div>`;
}

// -- the form -------------------------------------------------------------------------------------

function ParamControl({ param, value, onChange }) {
  const id = `param-${param.name}`;
  let control;
  if (param.control === "select") {
    control = html`<select id=${id} name=${param.name} value=${String(value)}
      onChange=${(e) => onChange(e.target.value)}>
      ${param.required ? null : html`<option value="">(not set)</option>`}
      ${param.enum.map((option) => html`<option value=${String(option)}>${String(option)}</option>`)}
    </select>`;
  } else if (param.control === "switch") {
    control = html`<label class="switch"><input type="checkbox" id=${id} name=${param.name} checked=${Boolean(value)}
      onChange=${(e) => onChange(e.target.checked)} /><span class="slider"></span></label>`;
  } else if (param.control === "number") {
    control = html`<input type="number" id=${id} name=${param.name} value=${value} step=${param.step}
      min=${param.minimum} max=${param.maximum} onInput=${(e) => onChange(e.target.value)} />`;
  } else {
    control = html`<input type="text" id=${id} name=${param.name} value=${value}
      minLength=${param.minLength} maxLength=${param.maxLength} onInput=${(e) => onChange(e.target.value)} />`;
  }
  const bounds = [];
  if (param.minimum !== undefined) bounds.push(`${param.minimum} to ${param.maximum}`);
  if (param.maxLength !== undefined) bounds.push(`${param.minLength || 0} to ${param.maxLength} chars`);
  return html`<div class="field">
    <label for=${id}>${param.name}${param.required ? html`<span class="required">*</span>` : null}
      <span class="type">${param.type}${bounds.length ? `, ${bounds.join(", ")}` : ""}</span></label>
    ${control}
    ${param.description ? html`<small>${param.description}</small>` : null}
  </div>`;
}

function FileChooser({ input, onChange, accept }) {
  return html`<input type="file" id=${`input-${input.name}`} name=${input.name} accept=${accept}
    onChange=${async (e) => {
      const file = e.target.files[0];
      if (!file) return onChange({ bytes: null, file: null, recorded: false });
      onChange({ bytes: new Uint8Array(await file.arrayBuffer()), file: file.name, recorded: false });
    }} />`;
}

function Recorder({ input, onChange }) {
  const [recording, setRecording] = useState(null);
  const [elapsed, setElapsed] = useState(0);
  const [problem, setProblem] = useState("");
  useEffect(() => {
    if (!recording) return undefined;
    const started = performance.now();
    const timer = setInterval(() => setElapsed((performance.now() - started) / 1000), 100);
    return () => clearInterval(timer);
  }, [recording]);
  if (!recordingPossible()) {
    return html`<small class="muted">Recording needs a browser with microphone access (https or localhost).</small>`;
  }
  const rate = input.pcm ? input.pcm.sample_rate : 16000;
  const start = async () => {
    setProblem("");
    setElapsed(0);
    try {
      setRecording(await recordPcm(rate));
    } catch (error) {
      setProblem(`cannot record: ${error.message || error}`);
    }
  };
  const stop = async () => {
    const pcm = await recording.stop();
    setRecording(null);
    // a raw PCM input gets the samples; any other audio input a WAV file of them
    const recorded = input.pcm ? { bytes: pcm, file: "recording.pcm" } : { bytes: wav(pcm, rate), file: "recording.wav" };
    onChange({ ...recorded, recorded: true });
  };
  return html`<span class="recorder">
    ${recording
      ? html`<button type="button" class="recording" id=${`stop-${input.name}`} onClick=${stop}>Stop recording</button>
          <span class="muted" id=${`recorded-${input.name}`} data-seconds=${elapsed.toFixed(1)}>${elapsed.toFixed(1)} s</span>`
      : html`<button type="button" id=${`record-${input.name}`} onClick=${start}>Record</button>`}
    ${problem ? html`<small class="failure-text">${problem}</small>` : null}
  </span>`;
}

function InputControl({ input, onChange, onRemove, dataTypes }) {
  const id = `input-${input.name}`;
  let control;
  let preview = null;
  if (input.type === "text") {
    control = html`<textarea id=${id} name=${input.name} rows="4" value=${input.text}
      onInput=${(e) => onChange({ text: e.target.value, bytes: null, file: null })}></textarea>`;
  } else {
    const accept = { image: "image/*", audio: "audio/*,.pcm,.raw,.wav", video: "video/*" }[input.type] || "";
    control = html`<${FileChooser} input=${input} onChange=${onChange} accept=${accept} />`;
    if (input.bytes) {
      const bytes = input.bytes;
      if (input.type === "image" || input.type === "video") {
        preview = html`<${Media} kind=${input.type} blob=${new Blob([bytes], { type: mimeOf(bytes, input.type, input.attributes.encoding) })} />`;
      } else if (input.type === "audio") {
        preview = html`<${Media} kind="audio" blob=${audioBlob(bytes, input.attributes)} />`;
      }
    }
  }
  const details = [];
  if (input.pcm) details.push(`raw PCM, ${input.pcm.sample_rate} Hz, ${input.pcm.channels} ch, ${input.pcm.bit_depth} bit`);
  else if (input.attributes && input.attributes.encoding) details.push(input.attributes.encoding);
  if (input.bytes) details.push(`${input.bytes.length} bytes${input.file ? ` from ${input.file}` : ""}`);
  return html`<div class="field input" data-input=${input.name}>
    <label for=${id}>
      ${input.declared
        ? html`${input.name}${input.required ? html`<span class="required">*</span>` : null}`
        : html`<input type="text" class="free-name" value=${input.name} placeholder="name"
            onInput=${(e) => onChange({ name: e.target.value })} />
            <select value=${input.type} onChange=${(e) => onChange({ type: e.target.value, bytes: null, file: null })}>
              ${dataTypes.map((t) => html`<option value=${t}>${t}</option>`)}</select>`}
      <span class="type">${input.declared ? input.type : ""}${details.length ? ` ${details.join(", ")}` : ""}</span>
      ${onRemove ? html`<button type="button" class="link" onClick=${onRemove}>remove</button>` : null}
    </label>
    ${control}
    ${input.type === "audio" ? html`<${Recorder} input=${input} onChange=${onChange} />` : null}
    ${preview}
    ${input.recorded && input.bytes ? html`<${Download} bytes=${input.bytes} name=${input.file} />` : null}
  </div>`;
}

function FreeParams({ rows, onChange }) {
  const update = (index, change) => onChange(rows.map((row, i) => (i === index ? { ...row, ...change } : row)));
  return html`<div class="free-params">
    ${rows.map((row, index) => html`<div class="free-row">
      <input type="text" placeholder="param" value=${row.key} onInput=${(e) => update(index, { key: e.target.value })} />
      <input type="text" placeholder="value" value=${row.value} onInput=${(e) => update(index, { value: e.target.value })} />
      <button type="button" class="link" onClick=${() => onChange(rows.filter((_, i) => i !== index))}>remove</button>
    </div>`)}
    <button type="button" class="link" id="add-param" onClick=${() => onChange([...rows, { key: "", value: "" }])}>+ param</button>
  </div>`;
}

function FreeOutputs({ rows, dataTypes, onChange }) {
  const update = (index, change) => onChange(rows.map((row, i) => (i === index ? { ...row, ...change } : row)));
  return html`<div class="free-outputs">
    ${rows.map((row, index) => html`<div class="free-row" data-free-output=${index}>
      <input type="text" placeholder="output" value=${row.name} onInput=${(e) => update(index, { name: e.target.value })} />
      <select value=${row.type} onChange=${(e) => update(index, { type: e.target.value })}>
        ${dataTypes.map((t) => html`<option value=${t}>${t}</option>`)}</select>
      <button type="button" class="link" onClick=${() => onChange(rows.filter((_, i) => i !== index))}>remove</button>
    </div>`)}
    <button type="button" class="link" id="add-output"
      onClick=${() => onChange([...rows, { name: `output${rows.length + 1}`, type: "text" }])}>+ output</button>
  </div>`;
}

// -- results --------------------------------------------------------------------------------------

function OnceResult({ result, outputs }) {
  const header = (result.response && result.response.header) || {};
  const failed = result.problem || header.code !== 0;
  return html`<div class="result" id="result" data-state=${failed ? "failed" : "ok"}>
    <div class="result-head">
      <span class=${failed ? "badge bad" : "badge good"}>${failed ? "failed" : "ok"}</span>
      <span id="latency">${result.latencyMs.toFixed(1)} ms</span>
      ${header.sid ? html`<span class="muted">sid ${header.sid}</span>` : null}
    </div>
    ${result.problem ? html`<div class="failure" id="failure"><span class="message" id="result-message">${result.problem}</span></div>` : null}
    ${!result.problem && header.code !== 0 ? html`<${Failure} header=${header} httpStatus=${result.httpStatus} />` : null}
    ${!result.problem && header.code === 0 ? html`<${Outputs} response=${result.response} outputs=${outputs} />` : null}
    <${Raw} request=${result.request} response=${result.response} />
  </div>`;
}

function SessionResult({ session, outputs }) {
  const last = session.batches[session.batches.length - 1];
  const failure = session.batches.find((b) => b.body && b.body.header && b.body.header.code !== 0);
  return html`<div class="result" id="result" data-state=${session.state}>
    <div class="result-head">
      <span class=${failure || session.problem ? "badge bad" : "badge good"}>${session.state}</span>
      <span>${session.sent} of ${session.chunks} chunks sent</span>
      <span id="batch-count">${session.batches.length} batches</span>
      ${last ? html`<span id="latency">${last.atMs.toFixed(0)} ms</span>` : null}
    </div>
    ${session.problem ? html`<div class="failure" id="failure"><span class="message" id="result-message">${session.problem}</span></div>` : null}
    ${failure ? html`<${Failure} header=${failure.body.header} />` : null}
    <ol class="batches">
      ${session.batches.map((batch, index) => {
        const header = batch.body.header || {};
        const final = header.status === 2;
        return html`<li class=${final ? "batch final" : "batch"} data-batch=${index}>
          <div class="batch-head">#${index + 1} <span class="muted">+${batch.atMs.toFixed(0)} ms</span>
            ${final ? html`<span class="badge good">final</span>` : null}</div>
          ${header.code === 0 ? html`<${Outputs} response=${batch.body} outputs=${outputs} open=${final ? 2 : 0} />` : null}
        </li>`;
      })}
    </ol>
    <${Raw} request=${session.requests} response=${session.batches.map((b) => b.body)} />
  </div>`;
}

function Snippets({ snippets }) {
  const [tab, setTab] = useState("curl");
  const [copied, setCopied] = useState("");
  const pre = useRef(null);
  if (!snippets) return null;
  if (snippets.error) return html`<p class="muted">No commands: ${snippets.error}</p>`;
  const tabs = [["curl", "curl"], ["grpcurl", "grpcurl"], ["aiges", "aiges call"], ["python", "Python"]];
  return html`<div class="snippets" id="snippets">
    <div class="tabs">${tabs.map(([key, label]) => html`<button type="button" data-tab=${key}
      class=${tab === key ? "tab active" : "tab"} onClick=${() => { setTab(key); setCopied(""); }}>${label}</button>`)}
      <button type="button" class="copy" id="copy-snippet" onClick=${async () =>
        setCopied((await copyText(snippets[tab], pre.current)) ? "copied" : "selected: press Ctrl+C")}>Copy</button>
      <span class="muted">${copied}</span>
    </div>
    <pre ref=${pre} class="snippet" id=${`snippet-${tab}`} data-snippet=${tab}>${snippets[tab]}</pre>
  </div>`;
}

// -- the live panel -------------------------------------------------------------------------------

function LivePanel({ name }) {
  const [status, setStatus] = useState(null);
  const [problem, setProblem] = useState("");
  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      while (!stopped) {
        if (!document.hidden) {
          try {
            const reply = await fetch(`/console/status.json${forService(name)}`, { cache: "no-store" });
            if (reply.ok) {
              setStatus(await reply.json());
              setProblem("");
            } else setProblem(`status: HTTP ${reply.status}`);
          } catch (error) {
            setProblem("the server does not answer");
          }
        }
        await sleep(STATUS_POLL_MS);
      }
    };
    poll();
    return () => { stopped = true; };
  }, []);
  if (!status) return html`<aside class="live" id="live"><h2>Live</h2><p class="muted">${problem || "…"}</p></aside>`;
  const calls = status.calls;
  const ms = (value) => (value === null || value === undefined ? "–" : `${value.toFixed(1)} ms`);
  return html`<aside class="live" id="live">
    <h2>Live <small class="muted">${problem || `${status.health}, up ${Math.round(status.uptime_s)} s`}</small></h2>
    <dl class="figures">
      <div><dt>calls/s</dt><dd id="live-rate">${calls.calls_per_s.toFixed(2)}</dd></div>
      <div><dt>errors/s</dt><dd id="live-errors">${calls.errors_per_s.toFixed(2)}</dd></div>
      <div><dt>p50</dt><dd id="live-p50">${ms(calls.p50_ms)}</dd></div>
      <div><dt>p99</dt><dd id="live-p99">${ms(calls.p99_ms)}</dd></div>
      <div><dt>licences</dt><dd id="live-licences">${status.licences.used} / ${status.licences.total}</dd></div>
      <div><dt>sessions</dt><dd id="live-sessions">${status.sessions}</dd></div>
    </dl>
    <small class="muted">requests answered in the last ${calls.window_s} s (${calls.calls}); sessions open now</small>
    <table class="workers" id="live-workers">
      <thead><tr><th>#</th><th>state</th><th>pid</th><th>gpu</th><th title="restarts">rst</th></tr></thead>
      <tbody>${status.workers.map((w) => html`<tr data-worker=${w.index}>
        <td>${w.index}</td><td class=${`state-${w.state}`}>${w.state}</td><td>${w.pid ?? "–"}</td>
        <td>${w.gpu || "–"}</td><td>${w.restarts}</td></tr>`)}</tbody>
    </table>
  </aside>`;
}

// -- the page -------------------------------------------------------------------------------------

function Console({ service }) {
  const [params, setParams] = useState(() => initialParams(service));
  const [extraParams, setExtraParams] = useState([]);
  // a wrapper that declares no outputs answers only those the call asks for: "text" to start with
  const [extraOutputs, setExtraOutputs] = useState(() => (service.outputs.length ? [] : [{ name: "text", type: "text" }]));
  const [inputs, setInputs] = useState(() => initialInputs(service));
  const [result, setResult] = useState(null);
  const [session, setSession] = useState(null);
  const [snippets, setSnippets] = useState(null);
  const [busy, setBusy] = useState(false);
  const streamable = inputs.filter((input) => inputBytes(input));
  const [streamName, setStreamName] = useState("");
  const streamed = streamable.find((i) => i.name === streamName) || streamable[0];
  const [chunkBytes, setChunkBytes] = useState("");
  const [intervalMs, setIntervalMs] = useState("");
  const chunk = Number(chunkBytes) || (streamed ? streamed.chunk_bytes : 4096);
  const interval = intervalMs === "" ? (streamed ? streamed.interval_ms : 40) : Number(intervalMs);

  const updateInput = (index, change) => setInputs(inputs.map((input, i) => (i === index ? { ...input, ...change } : input)));

  const loadSnippets = async (request, stream) => {
    try {
      const reply = await fetch(`/console/snippets${forService(service.service)}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          request, stream, chunk_bytes: chunk, interval_ms: interval, files: fileNames(inputs),
        }),
      });
      const body = await reply.json();
      setSnippets(reply.ok ? body : { error: body.error || `HTTP ${reply.status}` });
    } catch (error) {
      setSnippets({ error: String(error) });
    }
  };

  const runOnce = async () => {
    const request = onceRequest(service, params, extraParams, extraOutputs, inputs);
    setBusy(true);
    setSession(null);
    const started = performance.now();
    let response = null;
    let httpStatus = 0;
    let problem = "";
    try {
      const reply = await fetch(service.route, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request),
      });
      httpStatus = reply.status;
      const text = await reply.text();
      try {
        response = JSON.parse(text);
      } catch {
        problem = `HTTP ${reply.status}: ${text.slice(0, 300)}`;
      }
      if (response && !response.header) problem = `HTTP ${reply.status}: ${response.error || text.slice(0, 300)}`;
    } catch (error) {
      problem = `the request failed: ${error.message || error}`;
    }
    setResult({ request, response, httpStatus, problem, latencyMs: performance.now() - started });
    setBusy(false);
    loadSnippets(request, null);
  };

  const runSession = async () => {
    if (!streamed) return;
    const data = inputBytes(streamed);
    const pieces = [];
    for (let i = 0; i < data.length; i += chunk) pieces.push(data.subarray(i, i + chunk));
    if (!pieces.length) pieces.push(new Uint8Array());
    const others = inputs.filter((input) => input !== streamed && input.name && inputBytes(input));
    const head = requestHead(service, params, extraParams, extraOutputs);
    const frames = pieces.map((piece, index) => {
      const status = index === pieces.length - 1 ? 2 : index === 0 ? 0 : 1;
      const payload = { [streamed.name]: payloadEntry(streamed, piece, status) };
      if (index === 0) for (const other of others) payload[other.name] = payloadEntry(other, inputBytes(other), 3);
      const frame = index === 0 ? { ...head, payload } : { payload };
      frame.header = { ...(frame.header || {}), status };
      return frame;
    });
    setBusy(true);
    setResult(null);
    const state = { state: "streaming", chunks: frames.length, sent: 0, batches: [], requests: frames, problem: "" };
    setSession({ ...state });
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${service.route}`);
    const started = performance.now();
    const finished = new Promise((resolve) => {
      socket.onmessage = (event) => {
        let body;
        try {
          body = JSON.parse(event.data);
        } catch {
          body = { header: { code: -1, message: String(event.data) } };
        }
        state.batches = [...state.batches, { atMs: performance.now() - started, body }];
        if (body.header && body.header.code !== 0) state.state = "failed";
        setSession({ ...state });
      };
      socket.onclose = () => resolve();
      socket.onerror = () => {
        state.problem = "the WebSocket failed";
        resolve();
      };
    });
    await new Promise((resolve) => {
      socket.onopen = resolve;
      setTimeout(resolve, 10000);
    });
    for (const frame of frames) {
      if (socket.readyState !== WebSocket.OPEN) break;
      socket.send(JSON.stringify(frame));
      state.sent += 1;
      setSession({ ...state });
      if (state.sent < frames.length && interval > 0) await sleep(interval);
    }
    await finished;
    if (state.state === "streaming") {
      const last = state.batches[state.batches.length - 1];
      state.state = last && last.body.header && last.body.header.status === 2 ? "done" : "closed";
    }
    setSession({ ...state });
    setBusy(false);
    loadSnippets(onceRequest(service, params, extraParams, extraOutputs, inputs), streamed.name);
  };

  return html`<div class="page">
    <header class="top">
      <h1>${service.service} <small>${service.version}</small></h1>
      <nav>
        <code>POST ${service.route}</code>
        <a href="/docs">API docs</a> <a href=${`/openapi.json${forService(service.service)}`}>openapi.json</a>
      </nav>
    </header>
    ${(service.services || []).length > 1 ? html`<nav class="services" id="services">
      ${service.services.map((s) => html`<a href=${`/console${forService(s.name)}`} data-service=${s.name}
        class=${`${s.current ? "current" : ""} ${s.ready ? "" : "unready"}`.trim()}>${s.name}
        <small>${s.version}</small></a>`)}
    </nav>` : null}
    <main class="columns">
      <section class="form" id="form">
        <h2>Params</h2>
        ${service.params.length
          ? service.params.map((param) => html`<${ParamControl} key=${param.name} param=${param}
              value=${params[param.name]} onChange=${(value) => setParams({ ...params, [param.name]: value })} />`)
          : html`<p class="muted">This wrapper declares no params${service.declared ? "" : " (nor inputs or outputs)"}.</p>`}
        <${FreeParams} rows=${extraParams} onChange=${setExtraParams} />
        <h2>Inputs</h2>
        ${inputs.map((input, index) => html`<${InputControl} key=${index} input=${input} dataTypes=${service.data_types}
          onChange=${(change) => updateInput(index, change)}
          onRemove=${input.declared ? null : () => setInputs(inputs.filter((_, i) => i !== index))} />`)}
        <button type="button" class="link" id="add-input"
          onClick=${() => setInputs([...inputs, freeInput(`input${inputs.length + 1}`)])}>+ input</button>
        <div class="actions">
          ${service.once ? html`<button type="button" id="run" class="primary" disabled=${busy} onClick=${runOnce}>Run</button>` : null}
          ${service.sessions ? html`<span class="session-controls">
            <button type="button" id="stream" disabled=${busy || !streamed} onClick=${runSession}>Stream</button>
            ${streamable.length > 1 ? html`<select id="stream-input" value=${streamed && streamed.name}
              onChange=${(e) => setStreamName(e.target.value)}>${streamable.map((i) => html`<option>${i.name}</option>`)}</select>` : null}
            <label>chunk <input type="number" id="chunk-bytes" min="1" value=${chunkBytes} placeholder=${String(chunk)}
              onInput=${(e) => setChunkBytes(e.target.value)} /> bytes</label>
            <label>every <input type="number" id="interval-ms" min="0" value=${intervalMs} placeholder=${String(interval)}
              onInput=${(e) => setIntervalMs(e.target.value)} /> ms</label>
          </span>` : null}
        </div>
        <h2>Outputs</h2>
        ${service.outputs.length
          ? html`<p class="muted">${service.outputs.map((o) => `${o.name} (${o.type})`).join(", ")}</p>`
          : html`<p class="muted">This wrapper declares no outputs: name those to ask for.</p>`}
        <${FreeOutputs} rows=${extraOutputs} dataTypes=${service.data_types} onChange=${setExtraOutputs} />
      </section>
      <section class="answer">
        <h2>Result</h2>
        ${result ? html`<${OnceResult} result=${result} outputs=${service.outputs} />` : null}
        ${session ? html`<${SessionResult} session=${session} outputs=${service.outputs} />` : null}
        ${!result && !session ? html`<p class="muted">Fill in the form and press ${service.once ? "Run" : "Stream"}.</p>` : null}
        <h2>The same call</h2>
        ${snippets ? html`<${Snippets} snippets=${snippets} />` : html`<p class="muted">Run a call to get it as curl, grpcurl, aiges call and Python.</p>`}
      </section>
      <${LivePanel} name=${service.service} />
    </main>
  </div>`;
}

// -- loading the service ---------------------------------------------------------------------------

// While the workers load the wrapper the server answers 503 (10112, "still loading") with
// Retry-After; the page asks again by itself, never sooner than Retry-After says, backing off.
const MODEL_LOADING = "10112";
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 5000;

// Retry-After in ms: delay-seconds or an HTTP date (RFC 9110, 10.2.3); 0 when absent or unreadable.
function retryAfterMs(reply) {
  const value = (reply.headers.get("Retry-After") || "").trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? 0 : Math.max(0, date - Date.now());
}

// What /console/service.json says: {service}, {waitMs, reason} while the service cannot answer
// yet (a 503, or no answer at all), or {failure} for an error that asking again would not mend.
async function askService() {
  let reply;
  try {
    reply = await fetch(`/console/service.json${forService(CHOSEN)}`, { cache: "no-store" });
  } catch (error) {
    return { reason: "the server does not answer", waitMs: 0 };
  }
  const body = await reply.json().catch(() => null);
  if (reply.ok && body) return { service: body };
  const message = String(body?.error || body?.header?.message || `HTTP ${reply.status}`);
  if (reply.status === 503) {
    const loading = message.startsWith(`${MODEL_LOADING}:`);
    return { reason: loading ? "the model is still loading" : message, waitMs: retryAfterMs(reply) };
  }
  return { failure: message };
}

function Waiting({ reason, attempt, waitMs }) {
  return html`<p class="loading waiting" id="load-waiting" data-attempt=${attempt}>
    Loading the console: ${reason}; retrying in ${(waitMs / 1000).toFixed(1)} s (attempt ${attempt})…</p>`;
}

async function main() {
  const root = document.getElementById("console");
  let placeholder = true; // the page's own "Loading..." until the first render replaces it
  const show = (state, view) => {
    if (placeholder) root.textContent = "";
    placeholder = false;
    root.dataset.state = state;
    render(view, root);
  };
  let backoffMs = RETRY_FIRST_MS;
  for (let attempt = 1; ; attempt += 1) {
    const answer = await askService();
    if (answer.service) {
      document.title = `${answer.service.service} - aiges console`;
      show("ready", html`<${Console} service=${answer.service} />`);
      root.dataset.ready = "true";
      return;
    }
    if (answer.failure) {
      show("failed", html`<p class="failure-text" id="load-failure">The console cannot load the service: ${answer.failure}.
        <a href="">Retry</a></p>`);
      return;
    }
    const waitMs = Math.max(answer.waitMs, backoffMs);
    show("retrying", html`<${Waiting} reason=${answer.reason} attempt=${attempt} waitMs=${waitMs} />`);
    await sleep(waitMs);
    backoffMs = Math.min(backoffMs * 2, RETRY_MAX_MS);
  }
}

main();
