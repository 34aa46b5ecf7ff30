/**
 * Command-line flags as configuration: every setting the host reads from the environment (`MAX_WAIT`) can be given
 * as a flag of the same name in kebab case (`--max-wait 40` or `--max-wait=40`), and a flag wins over the
 * environment. Flags and variables feed one `ConfigProvider`, so `HostConfig` and `SectorsConfig` validate both the
 * same way and report the same names. `--profile` is short for `--batch-profile`; `--help` lists everything. A secret
 * given as a flag (`--database-url`, `--auth-token`) works but is warned about at start: it shows in `ps`.
 */
import { SectorsConfig } from "@sectors/core"
import { ConfigProvider, Result, String as Str } from "effect"
import * as HostConfig from "./HostConfig.ts"

/**
 * Settings by flag name: `--max-wait` → `MAX_WAIT`, the variable named by `Str.configCase`, the mapping
 * `ConfigProvider.constantCase` looks keys up with.
 */
export const flags: ReadonlyMap<string, string> = new Map([
  ...[...new Set([...HostConfig.keys, ...SectorsConfig.keys])].map((key) =>
    [Str.kebabCase(key), Str.configCase(key)] as const
  ),
  ["profile", "BATCH_PROFILE"]
])

/** What the command line asked for. */
export type Parsed =
  | { readonly _tag: "Run"; readonly settings: Readonly<Record<string, string>> }
  | { readonly _tag: "Help" }

/** Reads `argv` (without node and the script); fails with one readable line for an unknown or incomplete flag. */
export const parse = (argv: ReadonlyArray<string>): Result.Result<Parsed, string> => {
  const settings: Record<string, string> = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--help" || arg === "-h") return Result.succeed({ _tag: "Help" })
    if (!arg.startsWith("--")) return Result.fail(`unexpected argument "${arg}" (flags look like --port 8080)`)
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]
    const variable = flags.get(name)
    if (variable === undefined) return Result.fail(`unknown flag --${name} (see --help)`)
    const value = inline ?? argv[++i]
    if (value === undefined || (inline === undefined && value.startsWith("--"))) {
      return Result.fail(`flag --${name} needs a value`)
    }
    settings[variable] = value
  }
  return Result.succeed({ _tag: "Run", settings })
}

/** Settings that are secrets: given as flags, they show in `ps` to every user of the machine. */
const secrets: ReadonlyArray<readonly [variable: string, flag: string, instead: string]> = [
  ["DATABASE_URL", "--database-url", "DATABASE_URL or DATABASE_URL_FILE"],
  ["AUTH_TOKEN", "--auth-token", "AUTH_TOKEN or AUTH_TOKEN_FILE"]
]

/** One warning per secret given on the command line (never its value), saying what to use instead. */
export const secretWarnings = (settings: Readonly<Record<string, string>>): ReadonlyArray<string> =>
  secrets.filter(([variable]) => variable in settings).map(([, flag, instead]) =>
    `${flag} on the command line shows in \`ps\` to every user of this machine: prefer the environment, ${instead}`
  )

/** The provider for both configurations: flags over `env`, constant-case names. */
export const provider = (
  settings: Readonly<Record<string, string>>,
  env: Readonly<Record<string, string | undefined>>
): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromEnvRecord({ ...env, ...settings }).pipe(ConfigProvider.constantCase)

/** The `--help` text. */
export const help = (): string =>
  [
    "sector-host — sectors as supervised actors, persisted write-behind to PostgreSQL",
    "",
    "usage: npm start -- [--flag value]...",
    "",
    "Every flag has an environment variable of the same name in constant case (flags win):",
    ...[...flags].map(([flag, variable]) => `  --${flag.padEnd(22)} ${variable}`),
    "",
    "Defaults and meanings: README.md, section Configuration."
  ].join("\n")
