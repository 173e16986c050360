function [Y,Xf,Af] = cascade2_cell(X,~,~)
%CASCADE2_CELL neural network simulation function.
%
% Written by tools/make_matlab_fixtures.py in the format MATLAB's genFunction writes, with the
% weights of a net the script defines: not MATLAB's own output (no MATLAB is available here).
%
% [Y] = cascade2_cell(X,~,~) takes these arguments:
%
%   X = 1xTS cell, 1 inputs over TS timesteps
%   Each X{1,ts} = 3xQ matrix, input #1 at timestep ts.
%
% and returns:
%   Y = 1xTS cell of 1 outputs over TS timesteps.
%   Each Y{1,ts} = 2xQ matrix, output #1 at timestep ts.
%
% where Q is number of samples (or series) and TS is the number of timesteps.

%#ok<*RPMT0>

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = [-2.5621269303974468;0.5601109671385109;-0.05644764887053322];
x1_step1.gain = [1.991748526342685;2.256658570179589;1.3665027536245387];
x1_step1.ymin = [-1.0];

% Layer 1
b1 = [0.48572319596900804;-0.5835046593959008;-0.39650334235168727;-0.1534462792754272;0.09400060852712055];
IW1_1 = [-1.1293446687498492 0.3856792854433243 -0.05197799295848521;-0.7889359258019146 0.8664898437142716 0.7641854499658697;0.18321785519036085 -0.5150419485335307 0.07290073928395924;0.1542424642314902 -0.9810402220918756 1.4194975312028844;-0.46700929799549296 -0.535051378181556 0.7392185571549819];

% Layer 2
b2 = [-0.020300294991008716;-0.4421340587632705];
IW2_1 = [0.5142227733120206 -0.17458695006836808 -0.45186645908572026;0.616230364923277 0.7550189803197197 -2.1347728151430148];
LW2_1 = [-0.09312772427619448 -0.5925993073245449 -0.8652343522140309 1.0436659170452849 -0.9581007962716503;-0.19100787668416877 -1.48050236861902 -0.6693239483154156 -0.744279772114385 -0.8254897274166013];

% Output 1
y1_step1.xoffset = [-2.3724563913729657;-1.5082505730744464];
y1_step1.gain = [0.4786389094814037;1.1393267294323213];
y1_step1.ymin = [-1.0];

% ===== SIMULATION ========

% Format Input Arguments
isCellX = iscell(X);
if ~isCellX
  X = {X};
end

% Dimensions
TS = size(X,2); % timesteps
if ~isempty(X)
  Q = size(X{1},2); % samples/series
else
  Q = 0;
end

% Allocate Outputs
Y = cell(1,TS);

% Time loop
for ts=1:TS

    % Input 1
    Xp1 = mapminmax_apply(X{1,ts},x1_step1);
    
    % Layer 1
    a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*Xp1);
    
    % Layer 2
    a2 = repmat(b2,1,Q) + IW2_1*Xp1 + LW2_1*a1;
    
    % Output 1
    Y{1,ts} = mapminmax_reverse(a2,y1_step1);
end

% Final Delay States
Xf = cell(1,0);
Af = cell(2,0);

% Format Output Arguments
if ~isCellX
  Y = cell2mat(Y);
end
end

% ===== MODULE FUNCTIONS ========

% Map Minimum and Maximum Input Processing Function
function y = mapminmax_apply(x,settings)
  y = bsxfun(@minus,x,settings.xoffset);
  y = bsxfun(@times,y,settings.gain);
  y = bsxfun(@plus,y,settings.ymin);
end

% Sigmoid Symmetric Transfer Function
function a = tansig_apply(n,~)
  a = 2 ./ (1 + exp(-2*n)) - 1;
end

% Map Minimum and Maximum Output Reverse-Processing Function
function x = mapminmax_reverse(y,settings)
  x = bsxfun(@minus,y,settings.ymin);
  x = bsxfun(@rdivide,x,settings.gain);
  x = bsxfun(@plus,x,settings.xoffset);
end

