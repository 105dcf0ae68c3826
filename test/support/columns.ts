/** Checks on the CLI's human tables: each named column's values start exactly where its heading does. */
export function expectAligned(heading: string, rows: string[], names: string[]): void {
  for (const name of names) {
    const at = heading.indexOf(name);
    expect([name, at > 0]).toEqual([name, true]);
    for (const row of rows) expect([name, row, row.slice(at - 2, at), /\S/.test(row[at] ?? '')]).toEqual([name, row, '  ', true]);
  }
}
