// The console: log-in, then the pages the user's role may see, chosen by
// the location's hash (#/dashboard, ...).
import "leaflet/dist/leaflet.css";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { render, type FunctionComponent } from "preact";
import { useEffect, useState } from "preact/hooks";
import { accounts } from "./api";
import { loadConfig } from "./config";
import { lang, setLang, t, type Key } from "./i18n";
import { session, setSession } from "./session";
import { useValue } from "./state";
import { Login } from "./pages/login";
import { Dashboard } from "./pages/dashboard";
import { Alerts } from "./pages/alerts";
import { Steps } from "./pages/steps";
import { Devices } from "./pages/devices";
import { StoryPage } from "./pages/story";
import { DatasetsPage } from "./pages/datasets";
import { Users } from "./pages/users";
import { Account } from "./pages/account";

interface Page {
  path: string;
  label: Key;
  roles: string[];
  view: FunctionComponent;
}

const everyone = ["admin", "enterprise", "walker", "rider", "labeler"];

const pages: Page[] = [
  { path: "dashboard", label: "dashboard", roles: ["admin", "enterprise"], view: Dashboard },
  { path: "alerts", label: "alerts", roles: ["admin"], view: Alerts },
  { path: "steps", label: "steps", roles: everyone, view: Steps },
  { path: "devices", label: "devices", roles: ["admin"], view: Devices },
  { path: "story", label: "story", roles: everyone, view: StoryPage },
  { path: "datasets", label: "datasets", roles: ["admin", "enterprise"], view: DatasetsPage },
  { path: "users", label: "users", roles: ["admin"], view: Users },
  { path: "account", label: "account", roles: everyone, view: Account },
];

function useHash(): string {
  const [h, setH] = useState(location.hash);
  useEffect(() => {
    const f = () => setH(location.hash);
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  return h.replace(/^#\/?/, "");
}

async function logout() {
  const s = session.get();
  setSession(null);
  if (s?.refresh) {
    try {
      await accounts.logout({ refreshToken: s.refresh });
    } catch {
      // Signed out here either way; the refresh token expires on its own.
    }
  }
}

function App() {
  const s = useValue(session);
  const l = useValue(lang);
  const hash = useHash();
  const [menu, setMenu] = useState(false);
  useEffect(() => {
    document.documentElement.lang = l;
  }, [l]);
  if (!s) return <Login />;
  const mine = pages.filter((p) => p.roles.includes(s.role));
  const page = mine.find((p) => p.path === hash) ?? mine[0];
  const View = page.view;
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        {t("skipToContent")}
      </a>
      <header>
        <strong class="brand">{t("appName")}</strong>
        <button type="button" class="menu" aria-expanded={menu} aria-controls="nav" onClick={() => setMenu(!menu)}>
          {t("menu")}
        </button>
        <nav id="nav" class={menu ? "open" : ""} aria-label={t("menu")}>
          {mine.map((p) => (
            <a key={p.path} href={"#/" + p.path} aria-current={p === page ? "page" : undefined} onClick={() => setMenu(false)}>
              {t(p.label)}
            </a>
          ))}
        </nav>
        <span class="who" data-who={s.userId}>
          {s.userId} · {s.role}
        </span>
        <button type="button" data-action="lang" onClick={() => setLang(l === "ko" ? "en" : "ko")} lang={l === "ko" ? "en" : "ko"}>
          {t("language")}
        </button>
        <button type="button" data-action="logout" onClick={logout}>
          {t("signOut")}
        </button>
      </header>
      <main id="main" tabIndex={-1} data-page={page.path}>
        <h1>{t(page.label)}</h1>
        <View />
      </main>
    </>
  );
}

loadConfig().then(() => {
  const root = document.getElementById("app")!;
  root.textContent = ""; // the boot text
  render(<App />, root);
});
