/* The few line icons the page draws (SVG built in code: no files to fetch, nothing inline for the CSP to refuse). */

const SVG = 'http://www.w3.org/2000/svg';
const PATHS = {
  pencil: 'M4 20l4-1 11-11-3-3L5 16z M14 7l3 3',
  trash: 'M4 7h16 M9 7V4h6v3 M6 7l1 13h10l1-13 M10 11v6 M14 11v6',
};

export function icon(name) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', PATHS[name]);
  svg.append(path);
  return svg;
}
