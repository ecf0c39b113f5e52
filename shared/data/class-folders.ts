/**
 * Which class a folder name stands for, the same rule on the join page (a folder pick) and in Node's image-folder
 * reader: a class name, ignoring case and everything but letters and digits (a folder `tshirt-top` or `T-shirt_top` is
 * the class `T-shirt/top`: a folder name cannot hold a '/'), or a class index written as a number.
 *
 * The looser a rule, the later it is tried — exactly, then ignoring case, then ignoring case and punctuation — so a
 * folder `ab` is the class `ab` even when `a-b` comes first. Two classes that a folder matches by the same rule are an
 * error: guessing would mislabel every image in it.
 */
const slug = (x: string) => x.toLowerCase().replace(/[^\p{L}\p{N}]/gu, '');

const RULES: readonly [how: string, matches: (className: string, folder: string) => boolean][] = [
  ['exactly', (c, f) => c === f],
  ['ignoring case', (c, f) => c.toLowerCase() === f.toLowerCase()],
  ['ignoring case and punctuation', (c, f) => slug(c) !== '' && slug(c) === slug(f)],
];

/** The class index `folder` names among `classNames`, or null; throws when it names two classes equally well. */
export function classOfFolder(folder: string, classNames: readonly string[]): number | null {
  const name = folder.trim();
  for (const [how, matches] of RULES) {
    const hits = classNames.flatMap((c, i) => (matches(c, name) ? [i] : []));
    if (hits.length === 1) return hits[0];
    if (hits.length > 1) {
      throw new Error(
        `folder '${folder}' matches the classes ${hits.map((i) => `'${classNames[i]}'`).join(' and ')} ${how}; ` +
          'name it exactly as one of them',
      );
    }
  }
  if (/^\d+$/.test(name) && Number(name) < classNames.length) return Number(name);
  return null;
}

/** A folder name for a class name: the characters file systems refuse (/ \ : * ? " < > |) become '_'. */
export function folderOfClass(className: string): string {
  const safe = className.replace(/[/\\:*?"<>|\x00-\x1f]/g, '_').trim();
  return /^\.*$/.test(safe) ? `_${safe}` : safe;
}

/**
 * One folder name per class (folderOfClass), checked to read back as its own class: throws when two classes would
 * share a folder (`a/b` and `a_b` both become `a_b`; `Cat` and `cat` are one folder on macOS and Windows) or when a
 * folder would match another class too.
 */
export function classFolderNames(classNames: readonly string[]): string[] {
  const folders = classNames.map(folderOfClass);
  const seen = new Map<string, number>();
  for (const [i, f] of folders.entries()) {
    const j = seen.get(f.toLowerCase());
    if (j !== undefined) {
      throw new Error(
        `classes '${classNames[j]}' and '${classNames[i]}' would be written to the same folder ` +
          `('${folders[j]}'${folders[j] === f ? '' : ` / '${f}', equal ignoring case`}); rename one of them`,
      );
    }
    seen.set(f.toLowerCase(), i);
  }
  for (const [i, f] of folders.entries()) {
    let back: number | null;
    try {
      back = classOfFolder(f, classNames);
    } catch (e) {
      throw new Error(`class '${classNames[i]}' would be written to a folder that reads back ambiguously: ${(e as Error).message}`);
    }
    if (back !== i) {
      const as = back === null ? 'no class (name classes with a letter or digit)' : `class '${classNames[back]}'`;
      throw new Error(`class '${classNames[i]}' would be written to folder '${f}', which reads back as ${as}`);
    }
  }
  return folders;
}
