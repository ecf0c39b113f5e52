/**
 * `fedistill/datasets`: data on disk for Node — Fashion-MNIST (found, downloaded, or the committed subset), image
 * folders (decoded by sharp, prepared like the browser join page), idx files, the server's proxy/validation specs,
 * the default proxy size and its scaling, and `fedistill split`.
 */
export * from './fashion-mnist.ts';
export * from './image-folder.ts';
export * from './idx-files.ts';
export * from './sources.ts';
export * from './proxy-size.ts';
export * from './split.ts';
export { encodePng } from './png.ts';
export { prepareImage, type InvertMode, type RgbaImage } from '../shared/data/image-prep.ts';
