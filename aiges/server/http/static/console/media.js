// Bytes in and out of the console: base64, media types, WAV for raw PCM, the microphone.

export function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

export function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export const utf8 = {
  encode: (text) => new TextEncoder().encode(text),
  decode: (bytes) => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
};

const MIME = {
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp",
  bmp: "image/bmp", wav: "audio/wav", mp3: "audio/mpeg", ogg: "audio/ogg", opus: "audio/ogg",
  webm: "audio/webm", flac: "audio/flac", mp4: "video/mp4", h264: "video/mp4",
};

/** A media type for bytes of a data type: from the encoding attribute, else the bytes' magic. */
export function mimeOf(bytes, type, encoding) {
  const known = MIME[String(encoding || "").toLowerCase()];
  if (known && known.startsWith(type === "video" ? "video" : type)) return known;
  const head = Array.from(bytes.subarray(0, 12));
  const starts = (...values) => values.every((v, i) => head[i] === v);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "image/png";
  if (starts(0xff, 0xd8, 0xff)) return "image/jpeg";
  if (starts(0x47, 0x49, 0x46)) return "image/gif";
  if (starts(0x42, 0x4d)) return "image/bmp";
  if (starts(0x52, 0x49, 0x46, 0x46) && head[8] === 0x57) return type === "image" ? "image/webp" : "audio/wav";
  if (starts(0x49, 0x44, 0x33) || starts(0xff, 0xfb)) return "audio/mpeg";
  if (starts(0x4f, 0x67, 0x67, 0x53)) return "audio/ogg";
  if (starts(0x1a, 0x45, 0xdf, 0xa3)) return type === "video" ? "video/webm" : "audio/webm";
  return { image: "image/png", audio: "audio/wav", video: "video/mp4" }[type] || "application/octet-stream";
}

/** Is this raw PCM, as the declared attributes describe it (no container to play it from)? */
export function isRawPcm(bytes, attributes) {
  if (!attributes || !attributes.sample_rate) return false;
  const encoding = String(attributes.encoding || "raw").toLowerCase();
  const riff = bytes.length > 4 && bytes[0] === 0x52 && bytes[1] === 0x49 && bytes[2] === 0x46 && bytes[3] === 0x46;
  return ["raw", "pcm", "s16le", ""].includes(encoding) && !riff;
}

/** Raw little-endian PCM in a WAV container, so that the browser's audio player plays it. */
export function wav(pcm, rate, channels = 1, bits = 16) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, value) => [...value].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  const blockAlign = (channels * bits) / 8;
  text(0, "RIFF");
  header.setUint32(4, 36 + pcm.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true);
  header.setUint16(22, channels, true);
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * blockAlign, true);
  header.setUint16(32, blockAlign, true);
  header.setUint16(34, bits, true);
  text(36, "data");
  header.setUint32(40, pcm.length, true);
  const out = new Uint8Array(44 + pcm.length);
  out.set(new Uint8Array(header.buffer), 0);
  out.set(pcm, 44);
  return out;
}

/** A playable URL for audio bytes: raw PCM is wrapped in WAV first. */
export function audioBlob(bytes, attributes) {
  if (isRawPcm(bytes, attributes)) {
    const rate = Number(attributes.sample_rate);
    const channels = Number(attributes.channels || 1);
    const bits = Number(attributes.bit_depth || 16);
    return new Blob([wav(bytes, rate, channels, bits)], { type: "audio/wav" });
  }
  return new Blob([bytes], { type: mimeOf(bytes, "audio", attributes && attributes.encoding) });
}

export function recordingPossible() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.AudioWorkletNode);
}

/**
 * Record the microphone as 16-bit little-endian mono PCM at `rate` (the browser resamples).
 * Returns { stop(): Promise<Uint8Array> }.
 */
export async function recordPcm(rate) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  const context = new AudioContext({ sampleRate: rate });
  await context.audioWorklet.addModule("/console/static/console/pcm-recorder.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-recorder");
  const blocks = [];
  node.port.onmessage = (event) => blocks.push(event.data);
  source.connect(node);
  node.connect(context.destination); // silent: the recorder writes nothing to its output
  return {
    async stop() {
      stream.getTracks().forEach((track) => track.stop());
      source.disconnect();
      node.disconnect();
      await context.close();
      const length = blocks.reduce((sum, block) => sum + block.length, 0);
      const pcm = new DataView(new ArrayBuffer(length * 2));
      let offset = 0;
      for (const block of blocks) {
        for (const sample of block) {
          pcm.setInt16(offset, Math.max(-1, Math.min(1, sample)) * 0x7fff, true);
          offset += 2;
        }
      }
      return new Uint8Array(pcm.buffer);
    },
  };
}
