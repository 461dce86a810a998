// The console's microphone recorder: an AudioWorklet that hands each block of the first input
// channel (Float32, at the AudioContext's sample rate) to the page, which turns it into PCM.
class PcmRecorder extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}

registerProcessor("pcm-recorder", PcmRecorder);
