import "@xterm/xterm/css/xterm.css";
import "./app.css";
import { mount } from "svelte";
import App from "./App.svelte";
import { applyTheme } from "./lib/settings.svelte";
import { registerServiceWorker } from "./lib/push";

applyTheme();
registerServiceWorker();

const target = document.getElementById("app");
if (!target) throw new Error("no #app element");
export default mount(App, { target });
