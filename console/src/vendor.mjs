// The console's third-party code, in one ES module (dist/vendor.js): CodeMirror 6 with the languages the
// templates use, lint markers for build errors, and uPlot for the metrics charts.
export { EditorView, basicSetup } from 'codemirror';
export { EditorState, Compartment } from '@codemirror/state';
export { keymap } from '@codemirror/view';
export { javascript } from '@codemirror/lang-javascript';
export { python } from '@codemirror/lang-python';
export { rust } from '@codemirror/lang-rust';
export { json } from '@codemirror/lang-json';
export { yaml } from '@codemirror/lang-yaml';
export { setDiagnostics, lintGutter } from '@codemirror/lint';
export { default as uPlot } from 'uplot';
