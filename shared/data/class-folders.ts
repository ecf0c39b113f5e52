/**
 * Which class a folder name stands for, the same rule on the join page (a folder pick) and in Node's image-folder
 * reader: a class name, ignoring case and everything but letters and digits (a folder `tshirt-top` or `T-shirt_top` is
 * the class `T-shirt/top`: a folder name cannot hold a '/'), or a class index written as a number.
 */
const slug = (x: string) => x.toLowerCase().replace(/[^\p{L}\p{N}]/gu, '');

/** The class index `folder` names among `classNames`, or null. */
export function classOfFolder(folder: string, classNames: readonly string[]): number | null {
  const name = folder.trim().toLowerCase();
  const i = classNames.findIndex((c) => c.toLowerCase() === name || (slug(c) !== '' && slug(c) === slug(name)));
  if (i >= 0) return i;
  if (/^\d+$/.test(name) && Number(name) < classNames.length) return Number(name);
  return null;
}

/** A folder name for a class name: the characters file systems refuse (/ \ : * ? " < > |) become '_'. */
export function folderOfClass(className: string): string {
  const safe = className.replace(/[/\\:*?"<>|\x00-\x1f]/g, '_').trim();
  return /^\.*$/.test(safe) ? `_${safe}` : safe;
}
